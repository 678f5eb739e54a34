"""Before/after in one session: runs a benchmark script on several builds of pointengine in turn,
round after round, so that a change in machine load hits every build alike, and prints the median
of a metric per build and its ratio to the first build.

A build is a source tree with its extension built in place (`python setup.py build_ext --inplace`);
the benchmark script (from this checkout) imports pointengine from that tree (PYTHONPATH). The
records a run appends to the script's JSON lines file are its results.

    python benchmarks/compare_builds.py --build before=/tmp/pe-before --build after=. --rounds 3 \\
        --key scan cr --metric median_s -- benchmarks/bench_minkunet.py --scans 1 --no-spconv

Writes every record, tagged with build and round, to benchmarks/results/compare_builds.jsonl.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_once(script: str, script_args: list[str], tree: Path) -> list[dict]:
    """The records the script appends to its results file in one run on `tree`."""
    stem = Path(script).stem
    results = RESULTS / f"{stem}.jsonl"
    before = results.read_text().splitlines() if results.exists() else []
    # The tree's package, and this checkout's benchmarks (the scripts import their shared helpers);
    # PYTHONSAFEPATH keeps the working folder from shadowing the tree.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT / "benchmarks")]), PYTHONSAFEPATH="1")
    subprocess.run([sys.executable, script, *script_args], env=env, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in results.read_text().splitlines()[len(before) :]]


def field(record: dict, name: str):
    """record[name]; a dotted name reads nested records ("fp32_over_int8.best int8")."""
    for part in name.split("."):
        record = record[part]
    return record


def metric(record: dict, names: list[str]) -> list[float]:
    """The sum of the named fields (e.g. hash_ms + table_ms); a field holding a list (runs_s) gives
    each of its values."""
    values = [field(record, name) for name in names]
    values = [value if isinstance(value, list) else [value] for value in values]
    return [sum(parts) for parts in zip(*values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="append", required=True, help="NAME=PATH of a source tree built in place")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key", nargs="+", required=True, help="record fields that name a row (e.g. scan layer)")
    parser.add_argument("--metric", nargs="+", required=True, help="record fields summed into the compared value (dotted names read nested fields)")
    parser.add_argument(
        "--where", nargs="*", default=[], help="FIELD=VALUE filters on the records (e.g. engine=pointengine)"
    )
    parser.add_argument("script_and_args", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...]")
    args = parser.parse_args()
    rest = args.script_and_args[1:] if args.script_and_args[:1] == ["--"] else args.script_and_args
    script, *script_args = rest
    builds = dict(b.split("=", 1) for b in args.build)
    filters = dict(w.split("=", 1) for w in args.where)
    values: dict[tuple, dict[str, list[float]]] = {}
    log = RESULTS / "compare_builds.jsonl"
    for round_index in range(args.rounds):
        for name, tree in builds.items():
            for record in run_once(script, script_args, Path(tree).resolve()):
                if any(str(record.get(k)) != v for k, v in filters.items()):
                    continue
                key = tuple(record[k] for k in args.key)
                values.setdefault(key, {}).setdefault(name, []).extend(metric(record, args.metric))
                with log.open("a") as out:
                    out.write(json.dumps({"build": name, "round": round_index, "script": script, **record}) + "\n")
            print(f"round {round_index + 1}/{args.rounds}: {name} done", flush=True)
    # The minimum is the least disturbed by other processes; the median says how typical it is.
    names = list(builds)
    ratios = [f"{n} / {names[0]} (median, min)" for n in names[1:]]
    print("| " + " | ".join([*args.key, *(f"{n} median (min)" for n in names), *ratios]) + " |")
    print("|" + "---|" * (len(args.key) + 2 * len(names) - 1))
    for key, per_build in values.items():
        medians = [statistics.median(per_build[n]) for n in names]
        minima = [min(per_build[n]) for n in names]
        cells = [f"{m:.4g} ({lo:.4g})" for m, lo in zip(medians, minima)]
        cells += [f"{m / medians[0]:.3f}, {lo / minima[0]:.3f}" for m, lo in zip(medians[1:], minima[1:])]
        print("| " + " | ".join([*map(str, key), *cells]) + " |")


if __name__ == "__main__":
    main()
