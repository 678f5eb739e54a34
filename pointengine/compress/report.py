"""The table `pointengine compress` prints, and its accuracy-latency picture."""

from pathlib import Path

from .steps import StepResult


def steps_table(results: list[StepResult]) -> str:
    """Markdown: a row per step; ratios against the first (float) step."""
    base = results[0]
    lines = ["| step | parameters | size MB | GMACs | latency ms | speed-up | mIoU % | agreement % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        miou = "-" if r.miou is None else f"{100 * r.miou:.1f}"
        lines.append(f"| {r.name} | {r.parameters:,} | {r.bytes_on_disk / 1e6:.2f} | {r.macs / 1e9:.2f} | "
                     f"{1e3 * r.latency_s:.1f} | {base.latency_s / r.latency_s:.2f}x | {miou} | {100 * r.agreement:.1f} |")
    return "\n".join(lines)


def write_plot(results: list[StepResult], path, title: str) -> Path:
    """mIoU (or, without labels, agreement with the float model) against latency, a point per step."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'pointengine[viz]'") from None
    scored = all(r.miou is not None for r in results)
    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    for i, r in enumerate(results):
        value = 100 * (r.miou if scored else r.agreement)
        axes.scatter(1e3 * r.latency_s, value)
        # Labels alternate above and below their points: neighbouring steps often sit close together.
        axes.annotate(r.name, (1e3 * r.latency_s, value), textcoords="offset points", xytext=(5, 6 if i % 2 else -12),
                      fontsize=8)
    axes.set_xlabel("latency per scan (ms)")
    axes.set_ylabel("mIoU (%)" if scored else "agreement with the float model (%)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))
    return Path(path)
