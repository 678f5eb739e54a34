"""Pictures of a Profile (matplotlib, the `viz` extra): time per layer stacked by phase, and each
layer's achieved rate next to the GEMM of its shape and the machine's peak. Drawn on a Figure of its
own (no pyplot), so no global backend or state changes."""

from pathlib import Path

from .outputs import atomic_path
from .profiler import Profile

COLORS = {"map": "#e6883c", "compute": "#3c78b4", "other": "#9a9a9a", "between": "#d0d0d0", "gemm": "#202020", "peak": "#b42828"}


def _figure(width: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("plots need matplotlib: pip install 'pointengine[viz]'") from None
    return Figure(figsize=(width, 5.0), layout="constrained")


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    return path


def plot_time(profile: Profile, path) -> Path:
    """One bar per layer with MACs, in call order (kernel map below, compute above), then one bar for
    the other leaf modules together and one for the time between layers."""
    layers = [row for row in profile.layers if row.macs]
    others = sum(row.map_s + row.compute_s for row in profile.layers if not row.macs)
    names = [row.name for row in layers] + ["other layers", "between layers"]
    maps = [row.map_s * 1e3 for row in layers] + [0.0, 0.0]
    computes = [row.compute_s * 1e3 for row in layers]
    figure = _figure(max(8.0, 0.22 * len(names) + 2))
    axes = figure.add_subplot()
    positions = range(len(names))
    axes.bar(positions, maps, color=COLORS["map"], label="kernel map")
    axes.bar(positions[:-2], computes, bottom=maps[:-2], color=COLORS["compute"], label="compute")
    axes.bar([len(names) - 2], [others * 1e3], color=COLORS["other"], label="other layers (BatchNorm, ReLU, ...)")
    axes.bar([len(names) - 1], [profile.outside_s * 1e3], color=COLORS["between"], label="between layers")
    axes.set_xticks(list(positions), names, rotation=90, fontsize=6)
    axes.set_ylabel("ms")
    axes.set_title(f"time per layer ({profile.device} {profile.dtype}, {profile.threads} threads, total "
                   f"{profile.total_s * 1e3:.0f} ms, median of {profile.repeats})", fontsize=9)
    axes.legend(fontsize=7)
    return _save(figure, Path(path))


def plot_rates(profile: Profile, path) -> Path:
    """Achieved GFLOP/s of each layer with MACs, the rate of torch.mm of its shape (dots) and the
    machine's peak (a line), where measured."""
    layers = [row for row in profile.layers if row.macs]
    figure = _figure(max(8.0, 0.22 * len(layers) + 2))
    axes = figure.add_subplot()
    positions = list(range(len(layers)))
    axes.bar(positions, [row.flops_per_s / 1e9 for row in layers], color=COLORS["compute"], label="achieved")
    measured = [(i, row.gemm_flops_per_s / 1e9) for i, row in enumerate(layers) if row.gemm_flops_per_s]
    if measured:
        axes.scatter(*zip(*measured), color=COLORS["gemm"], s=12, zorder=3, label="torch.mm of the layer's shape")
    if profile.peak_flops_per_s:
        axes.axhline(profile.peak_flops_per_s / 1e9, color=COLORS["peak"], linestyle="--",
                     label=f"peak {profile.peak_flops_per_s / 1e9:.0f} ({profile.peak_source})")
    axes.set_xticks(positions, [row.name for row in layers], rotation=90, fontsize=6)
    axes.set_ylabel("GFLOP/s")
    axes.set_title(f"achieved vs peak ({profile.device} {profile.dtype}, {profile.threads} threads)", fontsize=9)
    axes.legend(fontsize=7)
    return _save(figure, Path(path))


def write_plots(profile: Profile, folder, stem: str = "profile") -> list[Path]:
    """FOLDER/STEM_time.png and FOLDER/STEM_rates.png."""
    folder = Path(folder)
    return [plot_time(profile, folder / f"{stem}_time.png"), plot_rates(profile, folder / f"{stem}_rates.png")]
