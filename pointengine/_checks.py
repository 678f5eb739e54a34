"""Input validation shared by the public entry points. Each failure is a ValueError (TypeError for
non-tensors) that names the argument, what was expected and what was given."""

import torch
from torch import Tensor

# Packed-key ranges (csrc/common/keys.h): 16 bits of batch, 16 signed bits per axis.
COORD_MIN, COORD_MAX = -32768, 32767
BATCH_MAX = 65534
# Largest kernel size, stride or dilation per axis: an axis of the packed key spans 2**16 values.
MAX_GEOMETRY = 65535


def tracing() -> bool:
    """Whether torch.compile or torch.export is tracing. The checks that read values (ranges, NaN,
    repeats) are skipped there: a branch on a value would break the graph or fail the export, and
    the kernels' own checks (TORCH_CHECK in csrc) still stop bad input at run time."""
    return torch.compiler.is_compiling()


def all_finite(tensor: Tensor) -> bool:
    """Whether no element is NaN or infinite. For floating tensors the minimum and maximum say it: both
    are NaN where any element is, and one of them is infinite where an element is; one pass, without
    the copy isfinite() makes, a twentieth of isfinite().all()'s time on a scan (benchmarks/README)."""
    if not tensor.is_floating_point():
        return bool(torch.isfinite(tensor).all())
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def as_tensor(value):
    """A tensor for anything with __dlpack__ (a CuPy or NumPy array, a JAX array ...), sharing its
    memory, without a copy; anything else is returned as it is, for the checks to name."""
    if not isinstance(value, Tensor) and hasattr(value, "__dlpack__"):
        return torch.from_dlpack(value)
    return value


def compute_dtypes(device: torch.device) -> tuple[torch.dtype, ...]:
    """The feature dtypes the sparse conv and linear kernels compute in on `device`: float32 and
    float64 on the CPU, and float16 and bfloat16 too on CUDA (with float32 accumulation)."""
    if device.type == "cuda":
        return (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    return (torch.float32, torch.float64)


def dtype_names(dtypes) -> str:
    return " and ".join(str(d).removeprefix("torch.") for d in dtypes)


def check_tensor(value, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_coords(coords, name: str = "coords", allow_empty: bool = False, check_range: bool = True) -> Tensor:
    """int32 [N, 4] (batch, x, y, z), inside the packable range when check_range."""
    check_tensor(coords, name)
    if coords.dtype != torch.int32:
        raise ValueError(f"{name} must have dtype torch.int32, got {coords.dtype}")
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (batch, x, y, z), got {list(coords.shape)}")
    if coords.shape[0] == 0:
        if allow_empty:
            return coords
        raise ValueError(f"{name} is empty: a sparse tensor needs at least one site")
    if not check_range or tracing():
        return coords
    lo, hi = torch.stack([coords.amin(0), coords.amax(0)]).tolist()  # one read back, not two
    _check_packable(name, lo, hi, "{}")
    return coords


def _check_packable(name: str, lo: list, hi: list, axis_label: str) -> None:
    """Per-column minima and maxima of (batch, x, y, z) rows inside the packed-key ranges; an axis
    is named in messages as axis_label.format(axis)."""
    if lo[0] < 0 or hi[0] > BATCH_MAX:
        raise ValueError(f"{name}: batch index must be in [0, {BATCH_MAX}], got [{lo[0]:.0f}, {hi[0]:.0f}]")
    for axis, name_axis in enumerate("xyz", start=1):
        if lo[axis] < COORD_MIN or hi[axis] > COORD_MAX:
            raise ValueError(
                f"{name}: {axis_label.format(name_axis)} must be in [{COORD_MIN}, {COORD_MAX}] (16-bit packed keys), "
                f"got [{lo[axis]:.0f}, {hi[axis]:.0f}]"
            )


def check_feats(feats, n_rows: int, name: str = "feats") -> Tensor:
    """Floating [N, C] features, finite, with one row per coordinate."""
    check_tensor(feats, name)
    if not feats.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {feats.dtype}")
    if feats.dim() != 2:
        raise ValueError(f"{name} must have shape [N, C], got {list(feats.shape)}")
    if feats.shape[0] != n_rows:
        raise ValueError(f"{name} has {feats.shape[0]} rows but coords has {n_rows}")
    if tracing():  # an assertion inside the traced program, checked each time it runs
        torch._assert_async(torch.isfinite(feats).all(), f"{name} contains NaN or inf values")
    elif not all_finite(feats):
        raise ValueError(f"{name} contains NaN or inf values")
    return feats


def check_same_device(**tensors: Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"tensors must be on one device, got {listed}")


def check_bias(bias, out_features: int, dtype: torch.dtype, dtype_of: str, **same_device: Tensor) -> None:
    """A bias [out_features] of the layer's dtype (that of `dtype_of`), on the device of `same_device`."""
    check_tensor(bias, "bias")
    if bias.shape != (out_features,):
        raise ValueError(f"bias must have shape [{out_features}], got {list(bias.shape)}")
    if bias.dtype != dtype:
        raise ValueError(f"bias dtype {bias.dtype} differs from {dtype_of} dtype {dtype}")
    check_same_device(**same_device, bias=bias)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_triple(value, name: str) -> tuple[int, int, int]:
    """A kernel size, stride or dilation: an int or three ints (not bools), each in [1, MAX_GEOMETRY],
    as a tuple of three. The one check of these arguments for every entry point."""
    if _is_int(value):
        triple = (value,) * 3
    elif isinstance(value, (tuple, list)):
        triple = tuple(value)
    else:
        triple = ()
    if len(triple) != 3 or not all(_is_int(v) for v in triple):
        raise ValueError(f"{name} must be an int or three ints, got {value!r}")
    if min(triple) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    if max(triple) > MAX_GEOMETRY:
        raise ValueError(f"{name} must be <= {MAX_GEOMETRY} (an axis of a packed key spans 2**16 values), got {value!r}")
    return triple


def check_point_coords(coords, name: str = "coords") -> Tensor:
    """float32/float64 [N, 4] (batch, x, y, z), finite, batch an integer in [0, BATCH_MAX], floor(x, y, z)
    inside the packable range."""
    check_tensor(coords, name)
    if coords.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must have dtype torch.float32 or torch.float64, got {coords.dtype}")
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (batch, x, y, z), got {list(coords.shape)}")
    if coords.shape[0] == 0:
        raise ValueError(f"{name} is empty: a point tensor needs at least one point")
    if not bool(torch.isfinite(coords).all()):
        raise ValueError(f"{name} contains NaN or inf values")
    batch = coords[:, 0]
    if not bool((batch == torch.floor(batch)).all()):
        raise ValueError(
            f"{name}: batch index (column 0) must hold integers, got {batch[batch != batch.floor()][0].item()}"
        )
    floored = torch.floor(coords)
    _check_packable(name, floored.amin(0).tolist(), floored.amax(0).tolist(), "floor({})")
    return coords
