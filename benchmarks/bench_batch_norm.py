"""BatchNorm + ReLU in training mode on the feature matrices of a MinkUNet cr 0.5 training step: the
fused kernel (pointengine.nn.BatchNorm.forward_relu; forward, and forward + backward) against torch's
batch norm followed by an in-place ReLU, the way the blocks ran before; and the end of a residual
block, relu(BN(x) + residual), forward + backward: the fused kernel taking the residual against it
without one followed by the addition and the ReLU. Timed round-robin in the same run (medians), with
the error of each one's output and input gradient against torch's in float64.

The shapes are the rows and channels of the layers of one SemanticKITTI 00/000000 step at 0.05 m
(rows of the real scan's stride 1, 2, 4, 8 levels; random values). Writes JSON lines to
benchmarks/results/bench_batch_norm.jsonl and prints a markdown table.

    python benchmarks/bench_batch_norm.py --threads 2 --repeats 7
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_conv.py: idle threads sleep

import argparse

import torch
from common import append_results, machine, round_robin

from pointengine import _ops
from pointengine.testing import relative_error

# (rows, channels): the sizes of the feature matrices of one MinkUNet cr 0.5 step on that scan.
SHAPES = ((98202, 16), (64164, 16), (64164, 48), (98202, 48), (33145, 64), (14825, 128), (5878, 128))


def torch_forward(x, weight, bias):
    return torch.nn.functional.batch_norm(x, None, None, weight, bias, True, 0.0, 1e-5).relu_()


def fused_forward(x, weight, bias):
    return _ops.batch_norm_train(x, weight, bias, 1e-5, True)[0]


def fused_then_add_relu(residual):
    return lambda x, weight, bias: (_ops.batch_norm_train(x, weight, bias, 1e-5, False)[0] + residual).relu_()


def fused_with_residual(residual):
    return lambda x, weight, bias: _ops.batch_norm_train(x, weight, bias, 1e-5, True, residual)[0]


def forward_backward(forward, x, weight, bias, grad):
    inputs = [t.detach().requires_grad_() for t in (x, weight, bias)]
    forward(*inputs).backward(grad)
    return inputs[0].grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    records = []
    for rows, channels in SHAPES:
        x = torch.randn(rows, channels, generator=g) * 2 + 0.5
        weight, bias = torch.rand(channels, generator=g) + 0.5, torch.randn(channels, generator=g)
        grad = torch.randn(rows, channels, generator=g)
        residual = torch.randn(rows, channels, generator=g).requires_grad_()  # the block's input: it takes a gradient
        runs = {
            "torch forward": lambda: torch_forward(x, weight, bias),
            "fused forward": lambda: fused_forward(x, weight, bias),
            "torch forward + backward": lambda: forward_backward(torch_forward, x, weight, bias, grad),
            "fused forward + backward": lambda: forward_backward(fused_forward, x, weight, bias, grad),
            "residual added after forward + backward": lambda: forward_backward(
                fused_then_add_relu(residual), x, weight, bias, grad),
            "residual fused forward + backward": lambda: forward_backward(
                fused_with_residual(residual), x, weight, bias, grad),
        }
        seconds = round_robin(runs, args.repeats, warmup=1)
        exact = [t.double() for t in (x, weight, bias, grad)]
        exact_out, exact_grad = torch_forward(*exact[:3]), forward_backward(torch_forward, *exact)
        records.append({
            "rows": rows, "channels": channels, "threads": args.threads, "repeats": args.repeats,
            **{name.replace(" ", "_").replace("+", "and") + "_s": value for name, value in seconds.items()},
            **{f"{name}_forward_error": relative_error(forward(x, weight, bias).double(), exact_out)
               for name, forward in (("torch", torch_forward), ("fused", fused_forward))},
            **{f"{name}_input_grad_error": relative_error(forward_backward(forward, x, weight, bias, grad).double(),
                                                          exact_grad)
               for name, forward in (("torch", torch_forward), ("fused", fused_forward))},
            "machine": machine(),
        })
    print(f"{machine()}, {args.threads} threads, median of {args.repeats}")
    print("| rows x channels | torch forward | fused | speedup | torch fwd + bwd | fused | speedup | "
          "+ residual: fused, add, relu fwd + bwd | fused with residual | speedup | "
          "output error torch, fused | input gradient error torch, fused |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        tf, ff = r["torch_forward_s"], r["fused_forward_s"]
        tb, fb = r["torch_forward_and_backward_s"], r["fused_forward_and_backward_s"]
        ab, rb = r["residual_added_after_forward_and_backward_s"], r["residual_fused_forward_and_backward_s"]
        print(f"| {r['rows']:,} x {r['channels']} | {tf * 1e3:.2f} ms | {ff * 1e3:.2f} ms | {tf / ff:.2f}x | "
              f"{tb * 1e3:.2f} ms | {fb * 1e3:.2f} ms | {tb / fb:.2f}x | "
              f"{ab * 1e3:.2f} ms | {rb * 1e3:.2f} ms | {ab / rb:.2f}x | "
              f"{r['torch_forward_error']:.1e}, {r['fused_forward_error']:.1e} | "
              f"{r['torch_input_grad_error']:.1e}, {r['fused_input_grad_error']:.1e} |")
    append_results("bench_batch_norm", records)


if __name__ == "__main__":
    main()
