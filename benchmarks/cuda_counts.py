"""What one call does on a GPU, read from torch.profiler: kernel launches, host synchronisations,
device-to-host copies, kernel-busy time; and its peak memory."""

from collections.abc import Callable

import torch
from torch.autograd import DeviceType

# Runtime and driver calls that launch a kernel (cuBLAS and CUTLASS kernels go through the Ex forms).
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")
# Calls that block the host until the GPU catches up; cudaMemcpy (not Async) blocks too.
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")
WINDOW = "bench_models.forward"


def launch_counts(run: Callable[[], object]) -> dict:
    """Counts of one run of `run`, profiled with CPU and CUDA activities.

    Host calls are counted inside a record_function window around the run, so the profiler's own
    closing synchronisation is left out. The kind of a copy is read from the GPU's records ("Memcpy
    DtoH (Device -> Pageable)" and the like): each .item(), int(tensor) or .tolist() makes one, and
    it blocks the host (a cudaMemcpyAsync followed by cudaStreamSynchronize). Kernel busy = the sum
    of the GPU kernels' durations, memcpy and memset excluded."""
    from torch.profiler import ProfilerActivity, profile, record_function

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with record_function(WINDOW):
            run()
        torch.cuda.synchronize()
    events = prof.events()
    window = next(e for e in events if e.name == WINDOW and e.device_type == DeviceType.CPU)
    lo, hi = window.time_range.start, window.time_range.end
    host = [e for e in events if e.device_type == DeviceType.CPU and lo <= e.time_range.start <= hi]
    gpu = [e for e in events if e.device_type == DeviceType.CUDA]
    kernels = [e for e in gpu if not e.name.startswith(("Memcpy", "Memset")) and e.name != WINDOW]
    copies = [e for e in gpu if e.name.startswith("Memcpy")]
    return {
        "launches": sum(e.name in LAUNCH_CALLS for e in host),
        "host_syncs": sum(e.name in SYNC_CALLS for e in host),
        "memcpy_calls": sum(e.name in ("cudaMemcpy", "cudaMemcpyAsync") for e in host),
        # None when the profiler gave no GPU records at all (then the kinds of the copies are unknown).
        "dtoh_copies": sum(e.name.startswith("Memcpy DtoH") for e in copies) if gpu else None,
        "gpu_kernels": len(kernels),
        "kernel_busy_ms": sum(e.time_range.elapsed_us() for e in kernels) / 1e3,
    }


def peak_memory_mb(run: Callable[[], object]) -> dict:
    """Peak of torch's CUDA allocator during one run: in all (weights and input included) and above
    what was allocated before it (activations, hash tables, kernel maps, workspaces)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_mb": peak / 2**20, "peak_above_start_mb": (peak - before) / 2**20}
