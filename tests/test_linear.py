"""functional.linear and nn.Linear: values against a float64 matmul, both kernel paths, gradients,
bitwise the same at any thread count, torch.nn.Linear's parameters and state dict, bad input."""

import pytest
import torch

from pointengine import _C, _ops, nn
from pointengine.functional import linear
from pointengine.testing import RELATIVE_TOLERANCE, relative_error

# (rows, in_features, out_features): one row, several tiles of 128 rows with a short last one, widths
# that are and are not multiples of the 8-column vectors, wider than one 32-column panel, no rows, no
# input features (the output is the bias, as torch's).
SHAPES = [(1, 3, 5), (300, 16, 32), (257, 7, 19), (130, 96, 70), (0, 4, 6), (3, 0, 5), (0, 0, 2)]
PATHS = {"dispatched": linear, "portable": lambda x, w, b=None: _C.linear_portable(x, w, b)}


def operands(shape, dtype, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    n, c_in, c_out = shape
    make = lambda *size: torch.randn(*size, generator=g, dtype=torch.float64).to(dtype)
    return make(n, c_in), make(c_out, c_in), make(c_out) if bias else None


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_values_match_a_float64_product(shape, dtype, bias, path):
    x, w, b = operands(shape, dtype, bias=bias)
    expected = x.double() @ w.double().t() + (b.double() if bias else 0)
    out = PATHS[path](x, w, b)
    assert out.dtype == dtype and out.shape == (shape[0], shape[2])
    assert relative_error(out, expected) <= RELATIVE_TOLERANCE[dtype]


def test_leading_dimensions_and_strided_operands():
    x, w, b = operands((24, 6, 5), torch.float32)
    x3 = x.reshape(2, 3, 4, 6)
    out = linear(x3, w.t().contiguous().t(), b)
    assert out.shape == (2, 3, 4, 5)
    assert relative_error(out.reshape(24, 5), x.double() @ w.double().t() + b.double()) <= 1e-5
    assert torch.equal(linear(x.t().contiguous().t(), w, b), linear(x, w, b))
    empty = torch.zeros(2, 3, 0)
    assert torch.equal(linear(empty, torch.zeros(5, 0), b), b.expand(2, 3, 5))


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(bias):
    x, w, b = operands((9, 5, 4), torch.float64, seed=3, bias=bias)
    args = [t.requires_grad_() for t in (x, w, b) if t is not None]
    assert torch.autograd.gradcheck(lambda *a: linear(*a), args)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bitwise_the_same_for_any_thread_count(path, dtype, restore_threads):
    """Enough rows and channels that torch splits the work; forward and every gradient."""
    x, w, b = operands((3000, 96, 40), dtype, seed=5)
    results = []
    for threads in (1, 2, 3, 4):
        torch.set_num_threads(threads)
        xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
        out = PATHS[path](xg, wg, bg)
        if path == "dispatched":
            out.square().sum().backward()
            results.append([out, xg.grad, wg.grad, bg.grad])
        else:
            results.append([out])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_module_is_torch_linear_with_the_same_state_dict():
    torch.manual_seed(0)
    ours = nn.Linear(12, 7)
    torch.manual_seed(0)
    theirs = torch.nn.Linear(12, 7)
    assert isinstance(ours, torch.nn.Linear)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    no_bias = nn.Linear(12, 7, bias=False, dtype=torch.float64)
    assert no_bias.bias is None and no_bias.weight.dtype == torch.float64
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(40, 12)
    assert relative_error(ours(x), theirs(x)) <= 1e-5
    assert relative_error(no_bias(x.double()), x.double() @ no_bias.weight.t()) <= 1e-12


@pytest.mark.parametrize(
    "args,message",
    [
        (
            dict(input=torch.ones(3, 2, dtype=torch.float16), weight=torch.ones(4, 2, dtype=torch.float16)),
            r"linear supports float32 and float64 input on cpu, got torch.float16",
        ),
        (
            dict(weight=torch.ones(4, 2, dtype=torch.float64)),
            r"weight dtype torch.float64 differs from input dtype torch.float32",
        ),
        (
            dict(weight=torch.ones(4, 3)),
            r"weight must have shape \[out_features, 2\] for input \[3, 2\] \(in_features last\), got weight \[4, 3\]",
        ),
        (dict(weight=torch.ones(4, 2, 1)), r"weight must have shape \[out_features, 2\]"),
        (dict(input=torch.tensor(1.0)), r"weight must have shape \[out_features, \?\] for input \[\]"),
        (dict(bias=torch.ones(3)), r"bias must have shape \[4\], got \[3\]"),
        (
            dict(bias=torch.ones(4, dtype=torch.float64)),
            r"bias dtype torch.float64 differs from input dtype torch.float32",
        ),
        (
            dict(weight=torch.ones(4, 2, device="meta")),
            r"tensors must be on one device, got input on cpu, weight on meta",
        ),
    ],
)
def test_bad_arguments(args, message):
    args = {"input": torch.ones(3, 2), "weight": torch.ones(4, 2), "bias": None, **args}
    with pytest.raises(ValueError, match=message):
        linear(**args)


def test_non_tensors_are_type_errors():
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        linear(torch.ones(3, 2), [[1.0, 2.0]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_gradient_over_several_row_blocks(dtype, restore_threads):
    """More rows than one block of the CPU weight gradient (_ops._DENSE_GRAD_ROWS): the float64 product,
    and the same bits at 1 and 3 threads."""
    x, w, _ = operands((2 * _ops._DENSE_GRAD_ROWS + 123, 24, 19), dtype, seed=7, bias=False)
    grad_out = torch.randn(x.shape[0], 19, generator=torch.Generator().manual_seed(8), dtype=dtype)
    grads = []
    for threads in (1, 3):
        torch.set_num_threads(threads)
        wg = w.clone().requires_grad_()
        linear(x, wg).backward(grad_out)
        grads.append(wg.grad)
    assert torch.equal(grads[0], grads[1])
    assert relative_error(grads[0].double(), grad_out.double().t() @ x.double()) <= RELATIVE_TOLERANCE[dtype]
