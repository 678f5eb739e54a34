"""pointengine.profile: what each row says (kind, strides, sites, pairs, MACs, traffic, who built the
map) against brute-force pairs and sizes; MinkUNet's MAC total against an independent count from the
architecture and brute-force pairs; the writers (CSV, JSON, Chrome trace, table) against the rows.
No timing is asserted."""

import csv
import json
import math

import pytest
import torch

import pointengine as pe
from pointengine import nn
from pointengine.models import MinkUNet
from pointengine.profile_report import as_dict, profile_table, trace_events, write_csv, write_json, write_trace
from pointengine.profiler import KINDS, count_macs, profile
from pointengine.testing import (
    all_offsets,
    brute_force_generative_sites,
    brute_force_pairs,
    brute_force_strided_sites,
    random_sites,
)


def scan(n=300, channels=4, seed=0, extent=10) -> pe.SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, 2, extent, gen, low=-extent // 2)
    return pe.SparseTensor(torch.randn(len(coords), channels, generator=gen), coords)


class EveryKind(torch.nn.Module):
    """One layer of every kind: two submanifold convs sharing a map, a 1x1 conv, a strided conv,
    BatchNorm and ReLU, a transposed conv back to the fine sites, a generative conv from the coarse
    sites, a linear head."""

    def __init__(self):
        super().__init__()
        self.sub1, self.sub2, self.point = nn.Conv3d(4, 8, 3), nn.Conv3d(8, 8, 3), nn.Conv3d(8, 6, 1)
        self.down, self.norm, self.relu = nn.Conv3d(6, 16, 2, 2), nn.BatchNorm(16), nn.ReLU()
        self.up = nn.Conv3d(16, 8, 2, 2, transposed=True)
        self.grow = nn.Conv3d(16, 4, 2, 2, transposed=True, generative=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: pe.SparseTensor) -> pe.SparseTensor:
        coarse = self.relu(self.norm(self.down(self.point(self.sub2(self.sub1(x))))))
        fine = self.up(coarse)
        self.head(fine.feats)
        return self.grow(coarse)


def sites_tensor(sites: set) -> torch.Tensor:
    return torch.tensor(sorted(sites), dtype=torch.int32)


def test_rows_say_kind_strides_sites_pairs_macs_traffic_and_map_owner():
    x = scan()
    n = x.num_sites
    model = EveryKind().eval()
    rows = {row.name: row for row in profile(model, x, repeats=1, warmup=0, end_to_end=False, peaks=False).layers}
    assert list(rows) == ["sub1", "sub2", "point", "down", "norm", "relu", "up", "head", "grow"]
    assert {row.kind for row in rows.values()} == set(KINDS)
    assert {name: row.kind for name, row in rows.items()} == {
        "sub1": "submanifold", "sub2": "submanifold", "point": "1x1", "down": "strided", "norm": "other",
        "relu": "other", "up": "transposed", "head": "linear", "grow": "generative",
    }
    one, two = (1, 1, 1), (2, 2, 2)
    assert [(rows[k].stride, rows[k].out_stride) for k in ("sub1", "point", "down", "norm", "up", "grow", "head")] == [
        (one, one), (one, one), (one, two), (two, two), (two, one), (two, one), (None, None)]

    sub = brute_force_pairs(x.coords, x.coords, all_offsets((3, 3, 3), (1, 1, 1)), one)
    coarse = sites_tensor(brute_force_strided_sites(x.coords, (2, 2, 2), two, one, "dense"))
    down = brute_force_pairs(x.coords, coarse, all_offsets((2, 2, 2), (1, 1, 1)), two)
    grown = sites_tensor(brute_force_generative_sites(coarse, (2, 2, 2), two, one))
    grow = brute_force_pairs(coarse, grown, all_offsets((2, 2, 2), (1, 1, 1)), two, transposed=True)
    expected = {  # name: (sites in, sites out, pairs, C_in, C_out)
        "sub1": (n, n, len(sub), 4, 8), "sub2": (n, n, len(sub), 8, 8), "point": (n, n, n, 8, 6),
        "down": (n, len(coarse), len(down), 6, 16), "up": (len(coarse), n, len(down), 16, 8),
        "head": (n, n, n, 8, 3), "grow": (len(coarse), len(grown), len(grow), 16, 4),
    }
    for name, (sites_in, sites_out, pairs, c_in, c_out) in expected.items():
        row = rows[name]
        assert (row.sites_in, row.sites_out, row.pairs, row.channels) == (sites_in, sites_out, pairs, (c_in, c_out)), name
        assert row.macs == pairs * c_in * c_out, name
    assert (rows["norm"].pairs, rows["norm"].macs, rows["norm"].channels) == (0, 0, (0, 0))

    # The second submanifold conv finds the first one's map: its map time counts there.
    assert rows["sub2"].map_owner == "sub1" and rows["sub2"].map_s == 0.0
    assert all(rows[k].map_owner is None for k in rows if k != "sub2")
    assert rows["point"].map_s == rows["head"].map_s == rows["norm"].map_s == 0.0
    assert [rows[k].dataflow for k in ("sub1", "down", "up", "grow")] == ["fused"] * 4
    assert rows["point"].dataflow is rows["head"].dataflow is None

    # Compulsory traffic: features in and out, parameters and buffers, the int32 neighbour table.
    f32 = 4
    assert rows["sub1"].traffic_bytes == f32 * (n * 4 + 27 * 4 * 8 + n * 8) + 4 * n * 27
    assert rows["down"].traffic_bytes == f32 * (n * 6 + 8 * 6 * 16 + len(coarse) * 16) + 4 * len(coarse) * 8
    assert rows["point"].traffic_bytes == f32 * (n * 8 + 8 * 6 + n * 6)
    assert rows["head"].traffic_bytes == f32 * (n * 8 + 8 * 3 + 3 + n * 3)
    assert rows["norm"].traffic_bytes == f32 * (2 * len(coarse) * 16 + 4 * 16) + 8  # and num_batches_tracked


def test_minkunet_macs_equal_an_independent_count_from_brute_force_pairs():
    gen = torch.Generator().manual_seed(0)
    coords = random_sites(1500, 2, 24, gen, low=-12)
    x = pe.SparseTensor(torch.randn(len(coords), 4, generator=gen), coords)
    torch.manual_seed(0)
    model = MinkUNet(in_channels=4, num_classes=7, cr=0.5).eval()
    # SPVNAS's MinkUNet widths (stem, down1..4, up1..4) at channel ratio 0.5.
    w = [int(0.5 * c) for c in (32, 32, 64, 128, 256, 256, 128, 96, 96)]
    one, two = (1, 1, 1), (2, 2, 2)
    levels = [coords]
    for _ in range(4):
        levels.append(sites_tensor(brute_force_strided_sites(levels[-1], two, two, one, "dense")))
    n = [len(level) for level in levels]
    sub = [len(brute_force_pairs(c, c, all_offsets((3, 3, 3), one), one)) for c in levels]
    down = [len(brute_force_pairs(levels[i], levels[i + 1], all_offsets(two, one), two)) for i in range(4)]

    def residual(level: int, c_in: int, c_out: int) -> int:
        """Two 3x3x3 convs, and a 1x1 shortcut when the width changes."""
        return sub[level] * (c_in * c_out + c_out * c_out) + (n[level] * c_in * c_out if c_in != c_out else 0)

    macs = sub[0] * (4 * w[0] + w[0] * w[0])
    for i in range(4):
        macs += down[i] * w[i] * w[i] + residual(i + 1, w[i], w[i + 1]) + residual(i + 1, w[i + 1], w[i + 1])
    for i in range(4):
        c_in, c_out, c_skip, level = w[4 + i], w[5 + i], w[3 - i], 3 - i
        macs += down[level] * c_in * c_out + residual(level, c_out + c_skip, c_out) + residual(level, c_out, c_out)
    macs += n[0] * w[8] * 7
    result = profile(model, x, repeats=1, warmup=0, end_to_end=False, peaks=False)
    assert result.macs == macs == count_macs(model, x)


def test_repeats_give_medians_and_the_times_add_up():
    x = scan()
    result = profile(EveryKind().eval(), x, repeats=3, warmup=1, end_to_end=True, peaks=False)
    assert result.repeats == 3 and result.end_to_end_s > 0
    assert result.total_s == pytest.approx(result.map_s + result.compute_s + result.outside_s)
    assert result.outside_s == pytest.approx(sum(row.gap_s for row in result.layers) + result.tail_s)
    # The input's own maps are untouched: every profiled forward ran on fresh copies.
    assert x.coordinate_map.kernel_maps == {}


def test_peaks_are_measured_for_the_layers_that_multiply():
    result = profile(EveryKind().eval(), scan(), repeats=1, warmup=0, end_to_end=False, peaks=True)
    assert result.peak_flops_per_s > 0
    for row in result.layers:
        assert (row.gemm_flops_per_s is not None) == (row.macs > 0), row.name
    assert result.layers[0].gemm_flops_per_s > 0
    # The peak is the best rate of the run: no layer's GEMM exceeds it.
    assert all(row.gemm_flops_per_s <= result.peak_flops_per_s for row in result.layers if row.macs)


def test_writers_agree_with_the_rows(tmp_path):
    result = profile(EveryKind().eval(), scan(), repeats=2, warmup=0, end_to_end=True, peaks=False)
    data = json.loads(write_json(result, tmp_path / "p.json").read_text())
    assert data == json.loads(json.dumps(as_dict(result)))
    assert [layer["name"] for layer in data["layers"]] == [row.name for row in result.layers]
    assert data["totals"]["macs"] == result.macs and data["totals"]["total_s"] == pytest.approx(result.total_s)
    assert sum(layer["time_share"] for layer in data["layers"]) == pytest.approx(1 - result.outside_s / result.total_s)

    with write_csv(result, tmp_path / "p.csv").open() as file:
        lines = list(csv.DictReader(file))
    assert [line["name"] for line in lines] == [row.name for row in result.layers] + ["total"]
    assert [int(line["macs"]) for line in lines[:-1]] == [row.macs for row in result.layers]
    assert int(lines[-1]["macs"]) == result.macs and lines[0]["channels"] == "4x8"

    trace = json.loads(write_trace(result, tmp_path / "p.trace.json").read_text())
    assert trace["traceEvents"] == json.loads(json.dumps(trace_events(result)))
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    forward, layers = spans[0], spans[1:]
    assert forward["name"] == "forward" and forward["dur"] == pytest.approx(result.total_s * 1e6)
    expected = []
    for row in result.layers:
        if row.map_s > 0:
            expected.append((f"{row.name} kernel map", row.map_s))
        expected.append((row.name, row.compute_s))
    assert [(e["name"], e["dur"]) for e in layers] == [(name, pytest.approx(s * 1e6)) for name, s in expected]
    for before, after in zip(layers, layers[1:]):
        assert before["ts"] + before["dur"] <= after["ts"] + 1e-6
    assert layers[-1]["ts"] + layers[-1]["dur"] <= forward["dur"] + 1e-6

    table = profile_table(result)
    assert all(row.name in table for row in result.layers)
    assert "between layers" in table and "total" in table and "end to end" in table and "(sub1)" in table


@pytest.mark.cuda
def test_on_cuda_the_rows_match_the_cpu_and_times_come_from_events():
    x = scan()
    model = EveryKind().eval()
    on_cpu = profile(model, x, repeats=1, warmup=0, end_to_end=False, peaks=False)
    model.cuda()
    result = profile(model, pe.SparseTensor(x.feats.cuda(), x.coords.cuda()), repeats=2, warmup=1)
    assert result.device.startswith("cuda") and result.dtype == "float32"
    assert [(r.name, r.kind, r.stride, r.sites_out, r.pairs, r.macs, r.traffic_bytes) for r in result.layers] == [
        (r.name, r.kind, r.stride, r.sites_out, r.pairs, r.macs, r.traffic_bytes) for r in on_cpu.layers]
    assert all(r.compute_s >= 0 and r.map_s >= 0 for r in result.layers)
    assert result.end_to_end_s > 0 and result.peak_flops_per_s > 0


class Alternating(torch.nn.Module):
    """Calls a different layer on every other forward."""

    def __init__(self):
        super().__init__()
        self.first, self.second, self.calls = nn.ReLU(), nn.ReLU(), 0

    def forward(self, x: pe.SparseTensor) -> pe.SparseTensor:
        self.calls += 1
        return (self.first if self.calls % 2 else self.second)(x)


def test_bad_arguments():
    with pytest.raises(RuntimeError, match="called its layers in a different order"):
        profile(Alternating(), scan(), repeats=2, warmup=0, end_to_end=False, peaks=False)
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        profile(EveryKind(), scan(), repeats=0)
    with pytest.raises(ValueError, match="no SparseTensor, PointTensor or Tensor"):
        profile(EveryKind(), "not a tensor")


def test_fma_peak_is_a_positive_rate_and_refuses_bad_durations(restore_threads):
    from pointengine import _C

    # No bound on the rate itself: that would be a timing test (the sanitizer build runs it at -O1).
    torch.set_num_threads(1)
    rate = _C.fma_peak_flops(0.05)
    assert math.isfinite(rate) and rate > 0
    with pytest.raises(RuntimeError, match=r"fma_peak_flops: seconds must be in \(0, 10\], got 0"):
        _C.fma_peak_flops(0.0)
