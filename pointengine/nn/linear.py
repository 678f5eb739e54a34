"""Linear: torch.nn.Linear whose output does not depend on the thread count."""

from torch import Tensor, nn

from ..functional.linear import linear


class Linear(nn.Linear):
    """torch.nn.Linear (same arguments, parameters and state dict) computed by
    `pointengine.functional.linear`: bitwise the same output for any number of threads."""

    def forward(self, input: Tensor) -> Tensor:
        return linear(input, self.weight, self.bias)
