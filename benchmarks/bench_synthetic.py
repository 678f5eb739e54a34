"""How close the synthetic lidar comes to real scans: the labelled SemanticKITTI scans of sequence 00
(../shared/data; only the synthetic side is measured when absent) next to seeded synthetic scans.

Per source: points per scan, generation time (synthetic), the fraction of points per class, the
range histogram, and per class the mean and spread of height (z) and remission, and the roughness
of its upright surfaces (walls, car sides, hedges: the median over 0.3 m cells of the points'
spread along the cell's normal). The summary rows say how far apart the two are: total-variation
distance of the class and range distributions (0 = the same, 1 = disjoint), mean |difference| of the
per-class z, remission and roughness over the classes both hold, and the real classes the synthetic
scans never produce. Writes JSON lines to
benchmarks/results/bench_synthetic.jsonl and markdown tables to stdout.

    python benchmarks/bench_synthetic.py                  # 8 synthetic scans (seeds 0-7), 64 x 2048 rays
    python benchmarks/bench_synthetic.py --seeds 3

It only uses generate_scan(seed) and the SemanticKITTI reader, so another tree's generator can be
measured with that tree's environment: `/work/main/.venv/bin/python benchmarks/bench_synthetic.py`.
"""

import argparse
import time

import numpy as np

from common import KITTI_SCANS, append_results, machine
from pointengine.datasets import generate_scan, load_dataset_config, load_scan

RANGE_EDGES = (0.0, 5.0, 10.0, 20.0, 30.0, 50.0, 80.0, np.inf)
CELL = 0.3  # m: the roughness cells


def real_scans() -> list:
    labels = KITTI_SCANS.parent / "labels"
    paths = sorted(path for path in KITTI_SCANS.glob("*.bin") if (labels / f"{path.stem}.label").is_file())
    return [load_scan(path, labels / f"{path.stem}.label") for path in paths]


def synthetic_scans(seeds: int) -> tuple[list, list[float]]:
    scans, seconds = [], []
    for seed in range(seeds):
        start = time.perf_counter()
        scans.append(generate_scan(seed))
        seconds.append(time.perf_counter() - start)
    return scans, seconds


def upright_roughness(scans: list) -> tuple[np.ndarray, np.ndarray]:
    """Per (scan, 0.3 m cell, class) group of at least 8 points whose plane stands upright (normal
    within 17 deg of horizontal): its class and the standard deviation (m) of its points along the
    normal, the square root of the smallest eigenvalue of their covariance."""
    labels, spreads = [], []
    for scan in scans:
        xyz = scan.points[:, :3].numpy().astype(np.float64)
        keys = np.concatenate([np.floor(xyz / CELL).astype(np.int64), scan.labels.numpy()[:, None]], axis=1)
        groups, group_of, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        centred = xyz - (np.stack([np.bincount(group_of, xyz[:, i]) for i in range(3)], 1) / counts[:, None])[group_of]
        moments = np.stack([np.bincount(group_of, centred[:, i] * centred[:, j], len(groups))
                            for i in range(3) for j in range(3)], 1).reshape(-1, 3, 3) / counts[:, None, None]
        values, vectors = np.linalg.eigh(moments)
        keep = (counts >= 8) & (np.abs(vectors[:, 2, 0]) < 0.3)
        labels.append(groups[keep, 3])
        spreads.append(np.sqrt(np.maximum(values[keep, 0], 0.0)))
    return np.concatenate(labels), np.concatenate(spreads)


def statistics(scans: list, classes: int) -> dict:
    """Pooled statistics of some scans: class fractions, range histogram, per-class z, remission and the
    roughness of upright surfaces."""
    points = np.concatenate([scan.points.numpy() for scan in scans]).astype(np.float64)
    labels = np.concatenate([scan.labels.numpy() for scan in scans])
    distance = np.linalg.norm(points[:, :3], axis=1)
    cell_labels, cell_spreads = upright_roughness(scans)
    per_class = {}
    for c in range(classes):
        mask = labels == c
        if mask.any():
            z, remission = points[mask, 2], points[mask, 3]
            cells = cell_spreads[cell_labels == c]
            per_class[c] = {"fraction": float(mask.mean()), "z_mean": float(z.mean()), "z_std": float(z.std()),
                            "remission_mean": float(remission.mean()), "remission_std": float(remission.std()),
                            "roughness_cm": float(100 * np.median(cells)) if cells.size >= 20 else None}
    return {
        "scans": len(scans),
        "points_per_scan": len(points) / len(scans),
        "range_fractions": (np.histogram(distance, RANGE_EDGES)[0] / len(points)).tolist(),
        "remission_mean": float(points[:, 3].mean()),
        "classes": per_class,
    }


def distances(real: dict, synthetic: dict, names: list[str]) -> dict:
    both = sorted(set(real["classes"]) & set(synthetic["classes"]) - {0})

    def fractions(stats):
        return np.array([stats["classes"].get(c, {}).get("fraction", 0.0) for c in range(len(names))])

    def mean_gap(key):
        pairs = [(real["classes"][c][key], synthetic["classes"][c][key]) for c in both]
        return float(np.mean([abs(r - s) for r, s in pairs if r is not None and s is not None]))

    return {
        "class_tv": float(0.5 * np.abs(fractions(real) - fractions(synthetic)).sum()),
        "range_tv": float(0.5 * np.abs(np.array(real["range_fractions"]) - synthetic["range_fractions"]).sum()),
        "z_gap": mean_gap("z_mean"),
        "remission_gap": mean_gap("remission_mean"),
        "roughness_gap_cm": mean_gap("roughness_cm"),
        "missing": [names[c] for c in sorted(set(real["classes"]) - set(synthetic["classes"]) - {0})],
    }


def markdown(sources: dict, names: list[str], gap: dict | None) -> str:
    heads = list(sources)
    lines = ["| | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    lines.append("| points per scan | " + " | ".join(f"{s['points_per_scan']:,.0f}" for s in sources.values()) + " |")
    lines.append("| remission mean | " + " | ".join(f"{s['remission_mean']:.3f}" for s in sources.values()) + " |")
    for i, (lo, hi) in enumerate(zip(RANGE_EDGES[:-1], RANGE_EDGES[1:])):
        cells = " | ".join(f"{100 * s['range_fractions'][i]:.1f}" for s in sources.values())
        lines.append(f"| % points at {lo:g}-{hi:g} m | {cells} |")
    if gap:
        lines += [f"\nclass TV distance {gap['class_tv']:.3f}, range TV distance {gap['range_tv']:.3f}, "
                  f"mean |z gap| {gap['z_gap']:.2f} m, mean |remission gap| {gap['remission_gap']:.3f}, "
                  f"mean |roughness gap| {gap['roughness_gap_cm']:.2f} cm; "
                  f"real classes never generated: {', '.join(gap['missing']) or 'none'}"]
    lines += ["", "| class | " + " | ".join(f"{h} % / z / remission / roughness cm" for h in heads) + " |",
              "|---" * (len(heads) + 1) + "|"]
    for c, name in enumerate(names):
        cells = []
        for stats in sources.values():
            s = stats["classes"].get(c)
            rough = "-" if not s or s["roughness_cm"] is None else f"{s['roughness_cm']:.1f}"
            cells.append(f"{100 * s['fraction']:.2f} / {s['z_mean']:.2f}±{s['z_std']:.2f} / "
                         f"{s['remission_mean']:.2f}±{s['remission_std']:.2f} / {rough}" if s else "-")
        if any(cell != "-" for cell in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="synthetic scans, seeds 0..N-1")
    args = parser.parse_args()
    names = load_dataset_config("semantickitti").classes
    synthetic, seconds = synthetic_scans(args.seeds)
    sources = {f"synthetic ({args.seeds} seeds)": statistics(synthetic, len(names))}
    real = real_scans()
    if real:
        sources = {f"kitti/00 ({len(real)} scans)": statistics(real, len(names)), **sources}
    else:
        print(f"no labelled real scans in {KITTI_SCANS}: synthetic side only")
    gap = distances(*sources.values(), names) if real else None
    print(f"{machine()}; synthetic generation {np.median(seconds):.2f} s per scan (median of {args.seeds})")
    print(markdown(sources, names, gap))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    records = [{"source": name, **stats, "machine": machine(), "time": stamp} for name, stats in sources.items()]
    records[-1]["generate_s"] = seconds
    if gap:
        records.append({"source": "gap", **gap, "machine": machine(), "time": stamp})
    append_results("bench_synthetic", records)


if __name__ == "__main__":
    main()
