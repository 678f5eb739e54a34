"""MinkUNet end to end: pointengine next to the same network built from spconv's layers.

Each timed run starts from voxel coordinates and features: the SparseTensor (hash table) and every
kernel map are built inside the timed region, as in deployment. Eval mode, torch.no_grad. Scans:
SemanticKITTI sequence 00 from ../shared/data (skipped when absent) and the seeded synthetic scan,
voxelized at 0.05 m. spconv gets the same weights; its numbers are compared at 1 thread (its CPU
build races with more) and its speed is timed at --threads like ours.

Writes JSON lines to benchmarks/results/bench_minkunet.jsonl and prints a markdown table.
"""

import os

# spconv's own OpenMP runtime and torch's fight over the cores unless idle threads sleep (see
# bench_conv.py); it must be set before either runtime starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from common import machine
from spconv_minkunet import SpconvMinkUNet, randomize_statistics, spconv_input

import pointengine as pe
from pointengine.datasets import generate_scan, read_points
from pointengine.models import MinkUNet, build_model
from pointengine.profile_report import profile_table
from pointengine.profiler import profile

ROOT = Path(__file__).resolve().parents[1]
SCANS = ROOT.parent / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne"
RESULTS = ROOT / "benchmarks" / "results" / "bench_minkunet.jsonl"


def voxelize(points: torch.Tensor, voxel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(feats [M, 4] = mean x, y, z, remission of each voxel, coords int32 [M, 4])."""
    voxels = pe.functional.voxelize_points(points, voxel_size)
    return voxels.feats, voxels.coords


def load_scans(count: int) -> list[tuple[str, torch.Tensor]]:
    """(name, points [N, 4]): the first `count` scans of sequence 00, then the synthetic scan."""
    paths = sorted(SCANS.glob("*.bin"))[:count]
    if not paths:
        print(f"no SemanticKITTI scans under {SCANS}: real scans skipped")
    scans = [(f"kitti/00/{path.stem}", read_points(path)) for path in paths]
    return scans + [("synthetic/seed0", generate_scan(seed=0).points)]


# --- measurements -----------------------------------------------------------------------------------


def timed(run, repeats: int) -> tuple[list[float], object]:
    """(wall times of `repeats` runs after one warm-up run, the last run's result)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return times[1:], result


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def split(model: torch.nn.Module, feats: torch.Tensor, coords: torch.Tensor) -> dict:
    """Seconds spent building maps (input hash table + kernel maps), in convolutions, and elsewhere
    (other layers and the code between them), from one instrumented forward."""
    start = time.perf_counter()
    x = pe.SparseTensor(feats, coords)
    hash_s = time.perf_counter() - start
    result = profile(model, x, repeats=1, warmup=0, end_to_end=False, peaks=False)
    conv_s = sum(r.compute_s for r in result.layers if r.is_conv)
    return {
        "map_s": hash_s + result.map_s,
        "conv_s": conv_s,
        "other_s": result.total_s - result.map_s - conv_s,
        "gmacs": result.macs / 1e9,
    }


def bench_scan(name, points, model, sp_model, cr, args) -> list[dict]:
    feats, coords = voxelize(points, args.voxel_size)
    common = {
        "bench": "minkunet",
        "machine": machine(),
        "scan": name,
        "cr": cr,
        "points": len(points),
        "voxels": len(coords),
        "threads": args.threads,
    }
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        ours, logits = timed(lambda: model(pe.SparseTensor(feats, coords)).feats, args.repeats)
        record = {
            **common,
            "engine": "pointengine",
            "median_s": statistics.median(ours),
            "runs_s": ours,
            **split(model, feats, coords),
        }
        records = [record]
        if sp_model is None:
            return records
        import spconv.pytorch as sp

        indices, shape = spconv_input(feats, coords)
        batches = int(coords[:, 0].max()) + 1
        torch.set_num_threads(1)
        theirs_1t = sp_model(sp.SparseConvTensor(feats, indices, shape, batches))
        record["rel_err_spconv_1thread"] = relative_error(theirs_1t, logits)
        torch.set_num_threads(args.threads)
        theirs, _ = timed(lambda: sp_model(sp.SparseConvTensor(feats, indices, shape, batches)), args.repeats)
        records.append({**common, "engine": "spconv", "median_s": statistics.median(theirs), "runs_s": theirs})
    return records


def float64_check(model: MinkUNet, sp_model, points, args) -> dict:
    """Relative errors of both float32 engines against our float64 forward (our conv is tested
    against the dense float64 reference)."""
    import spconv.pytorch as sp

    feats, coords = voxelize(points, args.voxel_size)
    torch.set_num_threads(1)
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(pe.SparseTensor(feats.double(), coords)).feats
        ours = model(pe.SparseTensor(feats, coords)).feats
        indices, shape = spconv_input(feats, coords)
        theirs = sp_model(sp.SparseConvTensor(feats, indices, shape, 1))
    return {"ours_vs_float64": relative_error(ours, exact), "spconv_vs_float64": relative_error(theirs, exact)}


def markdown_row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(records: list[dict]) -> str:
    lines = [
        markdown_row(
            "scan",
            "voxels",
            "cr",
            "engine",
            "threads",
            "median s",
            "map s",
            "conv s",
            "other s",
            "GMACs",
            "spconv (1 thread) vs ours, rel. err.",
        ),
        markdown_row(*["---"] * 11),
    ]
    for r in records:
        ours = (
            [f"{r[k]:.3f}" for k in ("map_s", "conv_s", "other_s")] + [f"{r['gmacs']:.1f}"]
            if "map_s" in r
            else [""] * 4
        )
        err = f"{r['rel_err_spconv_1thread']:.1e}" if "rel_err_spconv_1thread" in r else ""
        lines.append(
            markdown_row(r["scan"], r["voxels"], r["cr"], r["engine"], r["threads"], f"{r['median_s']:.3f}", *ours, err)
        )
    return "\n".join(lines)


def print_profile(model: torch.nn.Module, feats: torch.Tensor, coords: torch.Tensor) -> None:
    print(profile_table(profile(model, pe.SparseTensor(feats, coords))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per scan, after one warm-up run")
    parser.add_argument("--scans", type=int, default=3, help="how many SemanticKITTI scans of sequence 00")
    parser.add_argument("--cr", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--no-spconv", action="store_true", help="skip the spconv baseline")
    parser.add_argument("--profile", action="store_true", help="print the per-layer profile of the first scan "
                        "(pointengine.profile: medians of 3, GEMM rates of each layer's shape and the peak)")
    args = parser.parse_args()

    sp_available = not args.no_spconv
    if sp_available:
        try:
            import spconv.pytorch  # noqa: F401
        except ImportError:
            print("spconv is not installed (pip install --no-deps spconv cumm pccm ccimport ...): baseline skipped")
            sp_available = False
    scans = load_scans(args.scans)
    print(f"machine: {machine()}")
    records, checks = [], {}
    for cr in args.cr:
        torch.manual_seed(0)
        model = build_model(f"minkunet_cr{cr}").eval()
        randomize_statistics(model, seed=1)
        sp_model = SpconvMinkUNet(model).eval() if sp_available else None
        if sp_model is not None:
            checks[cr] = float64_check(model, sp_model, scans[0][1], args)
            print(f"cr {cr}, {scans[0][0]}: relative error vs our float64 forward: {checks[cr]}")
        for name, points in scans:
            for record in bench_scan(name, points, model, sp_model, cr, args):
                print(json.dumps({k: v for k, v in record.items() if k != "machine"}), flush=True)
                records.append(record)
        if args.profile:
            print_profile(model, *voxelize(scans[0][1], args.voxel_size))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        for r in records:
            f.write(json.dumps({**r, "float64_check": checks.get(r["cr"])}) + "\n")
    print(f"\nmachine: {machine()}\n")
    print(table(records))


if __name__ == "__main__":
    main()
