"""Zoo MinkUNets end to end on a GPU (or the CPU), next to spconv's twin of the same network (issue 10).

Input: the first SemanticKITTI scan of sequence 00 (../shared/data), or the seeded synthetic scan
(generate_scan(seed=0)) when it is absent; a batch of B is B scans (the real ones cycled), each its
own batch index, in one SparseTensor. Voxelized once at --voxel-size (floor, mean features) outside
the timed region, then put on the device.

Timed region, eval mode under torch.inference_mode: SparseTensor(feats, coords) (validation and the
input hash table), every kernel map, the forward. CUDA: an event recorded before and after, then
synchronize; CPU: perf_counter. Median, p10 and p90 of --runs runs after --warmup; a measurement
that passes --budget-s stops early (never under 3 runs) and its record says how many it took.

Kernel-map time: a map is cached on the CoordinateMap of its input sites (functional/kmap.py), and
the coarser sites a strided conv makes hang off the map that made them, so a second forward on the
same SparseTensor finds every map and builds none. Map time = median(full run) - median(forward on
a tensor whose maps are cached); the two kinds of run alternate, so machine load hits both alike.
It counts the input hash table and the host waits of the map builds.

TFLOP/s = 2 x MACs / median time, MACs from pointengine.profiler.count_macs on the same input (sparse
convs: pairs x C_in x C_out; the 1x1 convs and the classifier). On CUDA one more full run goes
through torch.profiler (cuda_counts.py: kernel launches, host synchronisations, device-to-host
copies, summed kernel time next to the median wall time) and one through the allocator's peak.

spconv (when `import spconv.pytorch` works, CUDA only: bench_minkunet.py measures its CPU build):
the same layers and weights (spconv_minkunet.py), timed the same way with its SparseConvTensor built
inside the timed region (the shift to non-negative indices is done once outside it). Once per config,
on the first batch size in float32, the logits of both are compared, and ours on CUDA against ours on
the CPU. A float16 run is compared with the same engine's float32 logits.

JSON lines go to --json (default benchmarks/results/bench_models.jsonl) as each measurement ends;
a markdown table follows the line "## bench_models results".
"""

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import KITTI_SCANS, append_results, machine
from cuda_counts import launch_counts, peak_memory_mb
from spconv_minkunet import SpconvMinkUNet, randomize_statistics, spconv_input

import pointengine as pe
from pointengine.datasets import generate_scan, read_points
from pointengine.functional import voxelize_points
from pointengine.models import build_model
from pointengine.profiler import count_macs
from pointengine.testing import relative_error

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "fp64": torch.float64}
MIN_RUNS = 3


def load_scans() -> tuple[list[torch.Tensor], str]:
    """(points [N, 4] of each scan to cycle through, what they are)."""
    paths = sorted(KITTI_SCANS.glob("*.bin"))[:3]
    if paths:
        return [read_points(p) for p in paths], "SemanticKITTI 00/" + ", ".join(p.stem for p in paths)
    return [generate_scan(seed=0).points], f"synthetic seed 0 (no SemanticKITTI scans under {KITTI_SCANS})"


def batch_input(scans: list[torch.Tensor], batch: int, voxel_size: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(feats float32 [M, 4], coords int32 [M, 4]) of `batch` scans, scan i at batch index i, on `device`."""
    points = [scans[i % len(scans)] for i in range(batch)]
    index = torch.cat([torch.full((len(p),), i, dtype=torch.int32) for i, p in enumerate(points)])
    voxels = voxelize_points(torch.cat(points), voxel_size, batch=index)
    return voxels.feats.to(device), voxels.coords.to(device)


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def clock(run, device: torch.device) -> float:
    """Seconds of one run."""
    if device.type != "cuda":
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def time_runs(runs: dict, device: torch.device, args) -> dict[str, list[float]]:
    """Seconds of each callable, one of each per round, after args.warmup rounds; args.runs rounds,
    fewer once args.budget_s is spent (warm-up included) and MIN_RUNS are in."""
    start = time.perf_counter()
    for _ in range(args.warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for done in range(1, args.runs + 1):
        for name, run in runs.items():
            times[name].append(clock(run, device))
        if done >= MIN_RUNS and time.perf_counter() - start > args.budget_s:
            break
    return times


def summary(times: list[float]) -> dict:
    ms = [t * 1e3 for t in times]
    deciles = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) > 1 else ms * 9
    return {"median_ms": statistics.median(ms), "p10_ms": deciles[0], "p90_ms": deciles[-1], "runs": len(ms)}


def device_counts(run, device: torch.device) -> dict:
    """Launches, syncs and peak memory of one run on CUDA; nothing on the CPU."""
    if device.type != "cuda":
        return {}
    try:
        counts = launch_counts(run)
    except Exception as error:  # the profiler is a guest here: its failure must not cost the timings
        counts = {"profiler_error": describe(error)}
    return {**counts, **peak_memory_mb(run)}


def measure_ours(model, feats, coords, device, args) -> tuple[dict, Callable]:
    """(timings and counts, a callable giving the logits)."""
    cached = pe.SparseTensor(feats, coords)
    model(cached)  # builds and caches every map on `cached`
    times = time_runs(
        {"full": lambda: model(pe.SparseTensor(feats, coords)), "cached": lambda: model(cached)}, device, args
    )
    record = summary(times["full"])
    cached_ms = statistics.median(times["cached"]) * 1e3
    record.update(cached_forward_ms=cached_ms, map_ms=record["median_ms"] - cached_ms)
    record.update(device_counts(lambda: model(pe.SparseTensor(feats, coords)), device))
    return record, lambda: model(pe.SparseTensor(feats, coords)).feats


def spconv_forward(sp_model, feats, indices, shape, batch):
    """A callable: spconv's tensor built from the inputs, then its forward."""
    import spconv.pytorch as sp

    return lambda: sp_model(sp.SparseConvTensor(feats, indices, shape, batch))


def measure_spconv(run, device, args) -> tuple[dict, Callable]:
    record = summary(time_runs({"full": run}, device, args)["full"])
    record.update(device_counts(run, device))
    return record, run


def float32_references(master, fp32, feats, coords, sp_run, first: bool) -> tuple[int | None, dict, dict]:
    """(MACs, float32 logits of each engine, checks): relative errors, or the error that stopped one.
    The cross checks run on the first batch size only."""
    macs, reference, checks = None, {}, {}
    try:
        macs = count_macs(fp32, pe.SparseTensor(feats, coords))
        reference["pointengine"] = fp32(pe.SparseTensor(feats, coords)).feats
        if first and feats.device.type == "cuda":
            on_cpu = master(pe.SparseTensor(feats.cpu(), coords.cpu())).feats
            checks["ours_cuda_vs_cpu"] = relative_error(reference["pointengine"].cpu(), on_cpu)
    except Exception as error:  # reported in the record; the timings are still tried
        checks["ours_float32_error"] = describe(error)
    if sp_run is not None:
        try:
            reference["spconv"] = sp_run()
        except Exception as error:
            checks["spconv_float32_error"] = describe(error)
    if first and len(reference) == 2:
        checks["ours_vs_spconv"] = relative_error(reference["pointengine"], reference["spconv"])
    return macs, reference, checks


def bench_config(config: str, scans, device, sp_available: bool, args, emit) -> None:
    torch.manual_seed(0)
    master = build_model(config).eval()
    randomize_statistics(master, seed=1)
    fp32 = copy.deepcopy(master).to(device)
    for batch in args.batch:
        feats, coords = batch_input(scans, batch, args.voxel_size, device)
        sp_run = None
        if sp_available:
            indices, shape = spconv_input(feats, coords)
            sp_run = spconv_forward(SpconvMinkUNet(master).eval().to(device), feats, indices, shape, batch)
        macs, reference, checks = float32_references(master, fp32, feats, coords, sp_run, batch == args.batch[0])
        if checks:
            print(f"{config}, batch {batch}, float32: {checks}", flush=True)

        def measure(engine: str, dtype: torch.dtype) -> tuple[dict, Callable]:
            if engine.startswith("pointengine"):
                dataflow = engine.partition("/")[2]
                model = fp32 if dtype == torch.float32 and not dataflow else copy.deepcopy(master).to(device, dtype)
                if dataflow:
                    with_dataflow(model, dataflow)
                return measure_ours(model, feats.to(dtype), coords, device, args)
            sp_model = SpconvMinkUNet(master).eval().to(device, dtype)
            return measure_spconv(spconv_forward(sp_model, feats.to(dtype), indices, shape, batch), device, args)

        for name in args.dtype:
            ours = ["pointengine", *(f"pointengine/{d}" for d in args.dataflows)]
            for engine in ours + ["spconv"] if sp_available else ours:
                record = {"config": config, "batch": batch, "voxels": len(coords), "dtype": name, "engine": engine, "macs": macs}
                if engine == "pointengine" and name == "fp32":
                    record.update(checks)
                if args.deadline_s is not None and time.perf_counter() - args.started > args.deadline_s:
                    emit({**record, "error": f"skipped: past --deadline-s {args.deadline_s}"})
                    continue
                try:
                    result, forward = measure(engine, DTYPES[name])
                    record.update(result)
                    if macs is not None:
                        record["tflops"] = 2 * macs / (result["median_ms"] / 1e3) / 1e12
                    base = engine.partition("/")[0]  # pointengine/DATAFLOW against pointengine's float32
                    if DTYPES[name] != torch.float32 and base in reference:
                        record["rel_err_vs_fp32"] = relative_error(forward().float(), reference[base])
                except Exception as error:  # a refused dtype or a failing kernel: report it, go on
                    record["error"] = describe(error)
                emit(record)


def with_dataflow(model: torch.nn.Module, dataflow: str) -> None:
    for module in model.modules():
        if isinstance(module, pe.nn.Conv3d):
            module.dataflow = dataflow


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(records: list[dict]) -> str:
    spconv = {(r["config"], r["batch"], r["dtype"]): r.get("median_ms") for r in records if r["engine"] == "spconv"}
    head = ["config", "batch", "voxels", "dtype", "engine", "median ms", "p10-p90 ms", "runs", "TFLOP/s", "map ms",
            "launches", "syncs / DtoH", "kernel busy", "peak MB", "ours / spconv", "checks (rel. err.)"]
    lines = [row(*head), row(*["---"] * len(head))]
    for r in records:
        if "error" in r:
            error = r["error"].splitlines()[0][:200] if r["error"] else ""
            lines.append(row(r["config"], r["batch"], r["voxels"], r["dtype"], r["engine"], error, *[""] * 10))
            continue
        theirs = spconv.get((r["config"], r["batch"], r["dtype"])) if r["engine"].startswith("pointengine") else None
        busy = f"{r['kernel_busy_ms']:.1f} ms ({100 * r['kernel_busy_ms'] / r['median_ms']:.0f} %)" if "kernel_busy_ms" in r else ""
        syncs = f"{r['host_syncs']} / {fmt(r['dtoh_copies'], 'd') or '?'}" if "host_syncs" in r else ""
        checks = [f"{k} {r[k]:.1e}" for k in ("ours_vs_spconv", "ours_cuda_vs_cpu", "rel_err_vs_fp32") if k in r]
        errors = ("ours_float32_error", "spconv_float32_error", "profiler_error")
        checks += [f"{k}: {r[k].splitlines()[0][:200]}" for k in errors if k in r]
        lines.append(row(
            r["config"], r["batch"], r["voxels"], r["dtype"], r["engine"], f"{r['median_ms']:.2f}",
            f"{r['p10_ms']:.2f}-{r['p90_ms']:.2f}", r["runs"], fmt(r.get("tflops"), ".2f"), fmt(r.get("map_ms"), ".2f"),
            r.get("launches", ""), syncs, busy, fmt(r.get("peak_mb"), ".0f"),
            f"{r['median_ms'] / theirs:.2f}" if theirs else "", "; ".join(checks),
        ))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--configs", nargs="+", default=["minkunet_cr1.0", "minkunet_cr0.5"], help="zoo configs (models/)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="scans per SparseTensor")
    parser.add_argument("--dtype", nargs="+", choices=tuple(DTYPES), default=["fp16", "fp32"])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measurement (the median is reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--budget-s", type=float, default=20.0, help="seconds per measurement before it stops early")
    parser.add_argument("--deadline-s", type=float, default=None, help="skip what would start after this many seconds")
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--json", type=Path, default=None, help="JSON lines (default benchmarks/results/bench_models.jsonl)")
    parser.add_argument("--no-spconv", action="store_true", help="skip the spconv baseline")
    parser.add_argument("--dataflows", nargs="*", choices=pe.functional.DATAFLOWS, default=[],
                        help="also time ours with every conv on this dataflow (engine pointengine/DATAFLOW)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 runs after 1 warm-up")
    args = parser.parse_args()
    args.started = time.perf_counter()
    if args.quick:
        args.runs, args.warmup = MIN_RUNS, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    sp_available = device.type == "cuda" and not args.no_spconv
    if sp_available:
        try:
            import spconv.pytorch  # noqa: F401
        except Exception as error:  # ImportError, or a CUDA library that does not load
            print(f"spconv not importable ({type(error).__name__}: {error}): baseline skipped")
            sp_available = False
    where = machine()
    if device.type == "cuda":
        where += f", GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, built with CUDA {pe._C.built_with_cuda()}"
    scans, source = load_scans()
    print(f"machine: {where}\ninput: {source}, voxel size {args.voxel_size} m", flush=True)
    common = {"bench": "models", "machine": where, "device": device.type, "input": source, "threads": torch.get_num_threads()}
    records = []

    def emit(record: dict) -> None:
        records.append(record)
        append_results("bench_models", [{**common, **record}], args.json)
        print(json.dumps(record), flush=True)

    with torch.inference_mode():
        for config in args.configs:
            bench_config(config, scans, device, sp_available, args, emit)
    print(f"\n## bench_models results\n\nmachine: {where}\ninput: {source}, voxel size {args.voxel_size} m\n")
    print(table(records))


if __name__ == "__main__":
    main()
