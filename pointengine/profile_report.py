"""A Profile (profiler.py) written out: a terminal table, CSV, JSON, and a Chrome trace (the
trace-event JSON that chrome://tracing and ui.perfetto.dev open, as torch.profiler exports)."""

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from .outputs import atomic_path
from .profiler import MAP_KINDS, LayerProfile, Profile

# Columns of the CSV (and of each layer in the JSON), in order: the row's fields, then derived ones.
DERIVED = ("gflops", "gemm_share", "peak_share", "time_share")


def layer_record(profile: Profile, row: LayerProfile) -> dict:
    """One layer as plain values: its fields, the achieved GFLOP/s, its shares of the same-shape
    GEMM's rate and of the machine's peak (None where not measured or without MACs), and its share
    of the profile's total time."""
    record = asdict(row)
    rate = row.flops_per_s
    record.update(
        gflops=rate / 1e9,
        gemm_share=rate / row.gemm_flops_per_s if row.gemm_flops_per_s else None,
        peak_share=rate / profile.peak_flops_per_s if profile.peak_flops_per_s and row.macs else None,
        time_share=(row.map_s + row.compute_s) / profile.total_s if profile.total_s > 0 else 0.0,
    )
    return record


def totals_record(profile: Profile) -> dict:
    compute_s = profile.compute_s
    return {
        "pairs": sum(row.pairs for row in profile.layers),
        "macs": profile.macs,
        "traffic_bytes": sum(row.traffic_bytes for row in profile.layers),
        "map_s": profile.map_s,
        "compute_s": compute_s,
        "outside_s": profile.outside_s,
        "total_s": profile.total_s,
        "gflops": 2 * profile.macs / compute_s / 1e9 if compute_s > 0 else 0.0,
        "end_to_end_s": profile.end_to_end_s,
    }


def as_dict(profile: Profile) -> dict:
    settings = {key: value for key, value in asdict(profile).items() if key != "layers"}
    return {**settings, "layers": [layer_record(profile, row) for row in profile.layers], "totals": totals_record(profile)}


def _stride(row: LayerProfile) -> str:
    def one(stride):
        return "-" if stride is None else str(stride[0]) if len(set(stride)) == 1 else "x".join(map(str, stride))

    return one(row.stride) if row.out_stride == row.stride else f"{one(row.stride)}->{one(row.out_stride)}"


def _share(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f}"


HEADER = ("layer", "kind", "stride", "sites in", "sites out", "pairs", "MMAC", "map ms", "compute ms", "GFLOP/s",
          "% GEMM", "% peak", "MB", "% time")


def profile_table(profile: Profile) -> str:
    """The per-layer table, then the time between layers, the totals, the peak and the end-to-end check."""
    lines = []
    for row in profile.layers:
        record = layer_record(profile, row)
        mapped = f"{row.map_s * 1e3:.2f}" if row.map_owner is None else f"({row.map_owner})"
        lines.append((
            row.name, row.kind, _stride(row), f"{row.sites_in:,}", f"{row.sites_out:,}", f"{row.pairs:,}",
            f"{row.macs / 1e6:,.0f}" if row.macs else "", mapped if row.kind in MAP_KINDS else "",
            f"{row.compute_s * 1e3:.2f}", f"{record['gflops']:.1f}" if row.macs else "",
            _share(record["gemm_share"]), _share(record["peak_share"]), f"{row.traffic_bytes / 1e6:.1f}",
            f"{100 * record['time_share']:.1f}",
        ))
    totals = totals_record(profile)
    share = 100 * profile.outside_s / profile.total_s if profile.total_s > 0 else 0.0
    lines.append(("between layers", *[""] * 7, f"{profile.outside_s * 1e3:.2f}", *[""] * 4, f"{share:.1f}"))
    peak_share = None
    if profile.peak_flops_per_s and profile.compute_s:
        peak_share = 2 * profile.macs / profile.compute_s / profile.peak_flops_per_s
    lines.append((
        "total", "", "", "", "", f"{totals['pairs']:,}", f"{profile.macs / 1e6:,.0f}", f"{profile.map_s * 1e3:.2f}",
        f"{profile.compute_s * 1e3:.2f}", f"{totals['gflops']:.1f}", "", _share(peak_share),
        f"{totals['traffic_bytes'] / 1e6:.1f}", "100.0",
    ))
    widths = [max(len(cells[i]) for cells in (HEADER, *lines)) for i in range(len(HEADER))]

    def format_row(cells) -> str:
        return "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    rule = "  ".join("-" * w for w in widths)
    text = [format_row(HEADER), rule, *map(format_row, lines[:-2]), rule, *map(format_row, lines[-2:])]
    text.append(f"total {profile.total_s * 1e3:.1f} ms = kernel maps {profile.map_s * 1e3:.1f} + layers "
                f"{profile.compute_s * 1e3:.1f} + between layers {profile.outside_s * 1e3:.1f}")
    text.append(f"{len(profile.layers)} leaf-module calls, {profile.device} {profile.dtype}, {profile.threads} threads, "
                f"median of {profile.repeats}; map time counts once, at the layer that built the map (the others name it)")
    if profile.peak_flops_per_s is not None:
        text.append(f"peak {profile.peak_flops_per_s / 1e9:.1f} GFLOP/s ({profile.peak_source}); "
                    "% GEMM: of torch.mm of each layer's shape [pairs, C_in] @ [C_in, C_out]")
    if profile.end_to_end_s is not None:
        difference = profile.total_s / profile.end_to_end_s - 1
        text.append(f"end to end {profile.end_to_end_s * 1e3:.1f} ms uninstrumented (median of {profile.repeats}); "
                    f"the profile sums to {profile.total_s * 1e3:.1f} ms ({100 * difference:+.1f} %)")
    return "\n".join(text)


def write_json(profile: Profile, path) -> Path:
    with atomic_path(Path(path)) as temporary:
        temporary.write_text(json.dumps(as_dict(profile), indent=1) + "\n")
    return Path(path)


def write_csv(profile: Profile, path) -> Path:
    """One line per layer (its fields and DERIVED), then a line "total" with the sums."""
    records = [layer_record(profile, row) for row in profile.layers]
    columns = list(records[0]) if records else list(LayerProfile.__dataclass_fields__) + list(DERIVED)
    totals = totals_record(profile)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: "x".join(map(str, v)) if isinstance(v, tuple) else v for key, v in record.items()})
    writer.writerow({"name": "total", "gap_s": profile.outside_s, **totals})
    with atomic_path(Path(path)) as temporary:
        temporary.write_text(buffer.getvalue())
    return Path(path)


def trace_events(profile: Profile) -> list[dict]:
    """Complete ("X") events in microseconds on one thread: the forward, and inside it each layer's
    kernel map (when it built one) and compute, laid out one after the other with the median time
    between layers before each."""

    def event(name: str, category: str, start_s: float, seconds: float, args: dict) -> dict:
        return {"name": name, "cat": category, "ph": "X", "ts": start_s * 1e6, "dur": seconds * 1e6,
                "pid": 1, "tid": 1, "args": args}

    events, now = [], 0.0
    for row in profile.layers:
        now += row.gap_s
        args = {"kind": row.kind, "sites_in": row.sites_in, "sites_out": row.sites_out, "pairs": row.pairs, "macs": row.macs}
        if row.map_s > 0:
            events.append(event(f"{row.name} kernel map", "kernel map", now, row.map_s, args))
            now += row.map_s
        events.append(event(row.name, row.kind, now, row.compute_s, {**args, "gflops": row.flops_per_s / 1e9}))
        now += row.compute_s
    forward = event("forward", "model", 0.0, now + profile.tail_s, {"macs": profile.macs})
    process = f"pointengine profile ({profile.device})"
    names = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": process}},
             {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "forward"}}]
    return [*names, forward, *events]


def write_trace(profile: Profile, path) -> Path:
    with atomic_path(Path(path)) as temporary:
        temporary.write_text(json.dumps({"traceEvents": trace_events(profile), "displayTimeUnit": "ms"}) + "\n")
    return Path(path)
