"""`pointengine profile SCAN`: the table on stdout and every output file, for the zoo's demo model on a
small synthetic scan; a missing scan is answered in one line."""

import csv
import json

import torch

from pointengine import Segmenter
from pointengine.cli import main
from pointengine.datasets import generate_scan
from pointengine.profiler import count_macs


def test_profile_writes_the_table_csv_json_trace_and_plots(tmp_path, capsys):
    points = generate_scan(seed=3).points[:20000]
    scan = tmp_path / "scan.bin"
    points.numpy().astype("<f4").tofile(scan)
    out = tmp_path / "out"
    argv = ["profile", str(scan), "--repeats", "1", "--csv", str(out / "p.csv"), "--json", str(out / "p.json"),
            "--trace", str(out / "p.trace.json"), "--plot", str(out / "plots")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "demo on" in printed and "stem.0.0" in printed and "classifier" in printed
    assert "peak" in printed and "end to end" in printed and "the profile sums to" in printed

    data = json.loads((out / "p.json").read_text())
    seg = Segmenter("demo")
    assert data["totals"]["macs"] == count_macs(seg.model, seg.preprocess(points))
    assert data["peak_flops_per_s"] > 0 and data["end_to_end_s"] > 0 and data["threads"] == torch.get_num_threads()
    with (out / "p.csv").open() as file:
        assert [line["name"] for line in csv.DictReader(file)][-1] == "total"
    events = json.loads((out / "p.trace.json").read_text())["traceEvents"]
    assert {e["name"] for e in events if e["ph"] == "X"} >= {"forward", "stem.0.0", "stem.0.0 kernel map"}
    for name in ("profile_time.png", "profile_rates.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_scan_is_one_line(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "none.bin"), "--repeats", "1", "--no-peaks"]) == 2
    assert "pointengine profile: error:" in capsys.readouterr().err
