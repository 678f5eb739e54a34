"""Where one MinkUNet forward's time goes on a GPU: torch.profiler's table of ops and kernels, by
device time and by host time (from coordinates, maps built inside, as bench_models.py times it).

    python benchmarks/profile_cuda.py [--config minkunet_cr1.0] [--dtype fp16] [--batch 1] [--dataflow D]
"""

import argparse

import torch
from bench_models import DTYPES, batch_input, load_scans, with_dataflow
from torch.profiler import ProfilerActivity, profile

import pointengine as pe
from pointengine.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="minkunet_cr1.0")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dataflow", choices=pe.functional.DATAFLOWS, default=None, help="every conv on this dataflow")
    parser.add_argument("--rows", type=int, default=25, help="rows of each table")
    args = parser.parse_args()
    scans, what = load_scans()
    feats, coords = batch_input(scans, args.batch, 0.05, "cuda")
    model = build_model(args.config).cuda().eval().to(DTYPES[args.dtype])
    feats = feats.to(DTYPES[args.dtype])
    if args.dataflow:
        with_dataflow(model, args.dataflow)
    with torch.inference_mode():
        for _ in range(5):
            model(pe.SparseTensor(feats, coords))
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            model(pe.SparseTensor(feats, coords))
            torch.cuda.synchronize()
    print(f"{args.config} {args.dtype} batch {args.batch} dataflow {args.dataflow or 'default'} on {what}, {len(coords)} voxels")
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cuda_time_total", row_limit=args.rows))
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
