"""The Pareto plot of ``exactcomp stabilize --sweep``: validation accuracy (or agreement) against the parameters
left after exact compression, one series per method, the original model as a point and the budget's floor as
a line (matplotlib, Agg backend, written to PNG)."""

from __future__ import annotations

from pathlib import Path

STYLES = {"stabilize": ("o-", "stabilize (exactcomp)"), "magnitude": ("s--", "magnitude pruning, same fine-tuning"),
          "l1_scratch": ("^:", "L1 from scratch")}


def pareto_png(points: list, path: Path, *, metric: str, before: float, floor: float, parameters_before: int,
               title: str) -> None:
    """Write the plot as PNG to ``path`` (a path or a binary file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for method, (style, label) in STYLES.items():
        mine = sorted((p for p in points if p.method == method), key=lambda p: p.parameters)
        if mine:
            ax.plot([p.parameters for p in mine], [100 * p.metric for p in mine], style, label=label)
    ax.plot([parameters_before], [100 * before], "k*", markersize=12, label="original")
    ax.axhline(100 * floor, color="grey", linewidth=0.8, linestyle="-.", label="budget")
    bottom = 100 * floor - 5   # a collapsed point would squash the region that matters: say how many are below
    below = sum(100 * p.metric < bottom for p in points)
    if below:
        ax.set_ylim(bottom=bottom)
        ax.text(0.01, 0.02, f"{below} point{'s' if below > 1 else ''} below {bottom:.1f} % not shown",
                transform=ax.transAxes, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters after exact compression (log scale)")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
