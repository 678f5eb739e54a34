"""The fused training BatchNorm (+ residual, + ReLU) kernel: its output, statistics and gradients
against torch's batch norm in float64 (random rows, channel counts past the vector widths, a large mean
against the spread, a residual added or not, a ReLU or not); pointengine.nn.BatchNorm training
through it keeps torch's running statistics; the same bits at 1 and 2 threads; the cases it leaves
to torch."""

import pytest
import torch

from pointengine import SparseTensor, _ops, nn
from pointengine.testing import RELATIVE_TOLERANCE, relative_error

SHAPES = [(2, 1), (7, 3), (300, 17), (2500, 48), (1100, 130)]


def torch_reference(x, weight, bias, eps, relu, residual=None):
    out = torch.nn.functional.batch_norm(x, None, None, weight, bias, True, 0.0, eps)
    if residual is not None:
        out = out + residual
    return out.relu() if relu else out


def random_inputs(n, c, dtype, seed, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=torch.float64) * 2 + offset
    weight, bias = torch.randn(c, generator=g, dtype=torch.float64), torch.randn(c, generator=g, dtype=torch.float64)
    grad = torch.randn(n, c, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (x, weight, bias, grad)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n, c", SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("with_residual", [False, True])
def test_output_statistics_and_gradients_match_torch(dtype, relu, n, c, offset, with_residual):
    x, weight, bias, grad = random_inputs(n, c, dtype, n * 31 + c, offset)
    residual = torch.randn(n, c, generator=torch.Generator().manual_seed(n + c), dtype=torch.float64).to(dtype)
    inputs = [t.clone().requires_grad_() for t in (x, weight, bias, residual)]
    y, mean, var = _ops.batch_norm_train(*inputs[:3], 1e-5, relu, inputs[3] if with_residual else None)
    y.backward(grad)
    reference = [t.double().requires_grad_() for t in (x, weight, bias, residual)]
    expected = torch_reference(*reference[:3], 1e-5, relu, reference[3] if with_residual else None)
    expected.backward(grad.double())
    tolerance = RELATIVE_TOLERANCE[dtype] * (1 if offset == 0 else 1e3)  # float32 rows far from 0 round at 1e3
    assert y.dtype == dtype and mean.dtype == var.dtype == torch.float64
    assert relative_error(y.double(), expected.detach()) <= tolerance
    assert relative_error(mean, x.double().mean(0)) <= 1e-12
    assert relative_error(var, x.double().var(0, unbiased=False)) <= 1e-9
    # The input gradient is a difference of terms of the size of grad * weight / std (with two rows
    # it cancels to 0): its error is measured against that size.
    scale = (grad.double() * weight.double() / (var + 1e-5).sqrt()).abs().max()
    assert (inputs[0].grad.double() - reference[0].grad).abs().max() <= tolerance * scale
    for got, want in zip(inputs[1:3], reference[1:3]):
        assert relative_error(got.grad.double(), want.grad) <= tolerance
    if with_residual:
        # grad_y exactly where the ReLU passed, and torch's gradient wherever the output is clear of
        # the ReLU's edge (float32 rounding may move outputs within 0.05 of it to the other side).
        passed = y > 0 if relu else torch.ones_like(y, dtype=torch.bool)
        assert torch.equal(inputs[3].grad, torch.where(passed, grad, torch.zeros_like(grad)))
        clear = expected.detach().abs() > 0.05 if relu else torch.ones_like(passed)
        assert torch.equal(inputs[3].grad.double()[clear], reference[3].grad[clear])
    else:
        assert inputs[3].grad is None


def test_relu_gradient_is_zero_where_the_output_was_cut():
    x, weight, bias, grad = random_inputs(400, 5, torch.float64, 1)
    bias = bias - 10  # most outputs cut
    x.requires_grad_()
    y, _, _ = _ops.batch_norm_train(x, weight, bias, 1e-5, True)
    y.backward(grad)
    reference = x.detach().clone().requires_grad_()
    torch_reference(reference, weight, bias, 1e-5, True).backward(grad)
    assert (y == 0).float().mean() > 0.5
    assert relative_error(x.grad, reference.grad) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_mask_recomputed_from_x_is_the_outputs(dtype):
    """Given bias instead of y, the backward recomputes the ReLU's mask from x: the gradients are
    those read from y bit for bit, with outputs at the ReLU's edge too (a constant column whose
    normalized value is its bias, 0)."""
    x, weight, bias, grad = random_inputs(5000, 37, dtype, 3)
    x[:, 5], bias[5] = 1.5, 0.0
    y, mean, var = _ops.batch_norm_train(x, weight, bias, 1e-5, True)
    assert 0.3 < (y > 0).double().mean() < 0.7 and (y[:, 5] == 0).all()
    backward = torch.ops.pointengine.batch_norm_train_backward
    from_y = backward(grad, x, y, mean, var, weight, 1e-5, True)
    from_x = backward(grad, x, None, mean, var, weight, 1e-5, True, False, bias)
    assert all(torch.equal(a, b) for a, b in zip(from_y, from_x))


@pytest.mark.parametrize("relu, with_residual", [(False, False), (True, False), (True, True)])
def test_same_bits_at_one_and_two_threads(relu, with_residual, restore_threads):
    x, weight, bias, grad = random_inputs(9000, 40, torch.float32, 2)
    residual = x.flip(0) if with_residual else None
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        y, mean, var = _ops.batch_norm_train(x, weight, bias, 1e-5, relu, residual)
        # the ReLU's mask read from y after a residual, recomputed from x without one (as autograd does)
        y_read, bias_read = (y, None) if with_residual else (None, bias)
        backward = torch.ops.pointengine.batch_norm_train_backward(
            grad, x, y_read, mean, var, weight, 1e-5, relu, with_residual, bias_read)
        results.append((y, mean, var, *backward))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_module_keeps_torchs_running_statistics():
    """Three training steps of nn.BatchNorm (through the kernel; forward_relu too) leave the running
    mean, variance and count of torch.nn.BatchNorm1d, and its outputs and parameter gradients."""
    ours, theirs = nn.BatchNorm(6).double(), torch.nn.BatchNorm1d(6).double()
    with torch.no_grad():
        for module in (ours, theirs):
            module.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
    coords = torch.zeros(50, 4, dtype=torch.int32)
    coords[:, 1] = torch.arange(50)
    for step in range(3):
        x, _, _, grad = random_inputs(50, 6, torch.float64, 10 + step, offset=step)
        relu = step == 1
        out = (ours.forward_relu if relu else ours)(SparseTensor(x, coords)).feats
        expected = theirs(x)
        expected = expected.relu() if relu else expected
        assert relative_error(out.detach(), expected.detach()) <= 1e-12
        out.backward(grad)
        expected.backward(grad)
    for name in ("running_mean", "running_var"):
        assert relative_error(getattr(ours, name), getattr(theirs, name)) <= 1e-12
    assert ours.num_batches_tracked == theirs.num_batches_tracked == 3
    assert relative_error(ours.weight.grad, theirs.weight.grad) <= 1e-12
    assert relative_error(ours.bias.grad, theirs.bias.grad) <= 1e-12


def test_cases_left_to_torch_keep_torchs_behaviour():
    """One row in training is torch's ValueError; eval mode and float16 rows take torch's batch norm."""
    norm = nn.BatchNorm(3)
    one_row = SparseTensor(torch.randn(1, 3), torch.zeros(1, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        norm(one_row)
    norm.eval()
    x = torch.randn(5, 3)
    coords = torch.zeros(5, 4, dtype=torch.int32)
    coords[:, 1] = torch.arange(5)
    expected = torch.nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False)
    assert torch.equal(norm.forward_relu(SparseTensor(x, coords)).feats, expected.detach().relu())
