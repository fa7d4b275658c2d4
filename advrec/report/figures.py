"""PNG figures of experiment results (matplotlib, an optional extra: ``pip install "advrec[plot]"``).

Every function takes plain numbers (what the JSON reports hold) and writes one PNG, so a figure
can be redrawn from a saved report without re-running anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError('figures need matplotlib: pip install "advrec[plot]" '
                          "(tables and JSON/Markdown reports work without it)") from err
    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, ax, path: Path, title: str, xlabel: str, ylabel: str, legend_loc: str = "best") -> Path:
    """Title, axis labels, legend; write the PNG and free the figure."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc=legend_loc)
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return Path(path)


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def line_chart(path: Path, x: Sequence[float], series: Mapping[str, Sequence[float]], *,
               title: str, xlabel: str, ylabel: str, percent: bool = False) -> Path:
    """One line per series over ``x`` (e.g. share certified robust vs budget q, per model)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    for name, ys in series.items():
        ys = [100 * v for v in ys] if percent else list(ys)
        ax.plot(list(x), ys, marker="o", markersize=3, label=name)
    ax.grid(alpha=0.3)
    return _finish(fig, ax, path, title, xlabel, ylabel + (" (%)" if percent else ""))


def stacked_shares(path: Path, x: Sequence[float], robust: Sequence[float],
                   non_robust: Sequence[float], *, title: str, xlabel: str = "budget q") -> Path:
    """Robust (bottom), unknown (middle, white) and non-robust (top) shares per budget (paper Fig. 6)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    x = list(x)
    r = [100 * v for v in robust]
    nr = [100 * v for v in non_robust]
    ax.fill_between(x, 0, r, color="tab:blue", alpha=0.8, label="certified robust")
    ax.fill_between(x, [100 - v for v in nr], 100, color="tab:orange", alpha=0.8, label="certified non-robust")
    ax.fill_between(x, r, [100 - v for v in nr], color="white", label="unknown")
    ax.set_xlim(min(x), max(x))
    ax.set_ylim(0, 100)
    return _finish(fig, ax, path, title, xlabel, "instances (%)", legend_loc="center right")


def grouped_bars(path: Path, groups: Sequence[str], series: Mapping[str, Sequence[float]], *,
                 title: str, xlabel: str, ylabel: str, percent: bool = True) -> Path:
    """Bars per group, one colour per series (e.g. greedy vs random success rate per q)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    n = max(len(series), 1)
    width = 0.8 / n
    for s, (name, ys) in enumerate(series.items()):
        xs = [g + (s - (n - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [100 * v for v in ys] if percent else list(ys), width=width, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(list(groups))
    ax.grid(alpha=0.3, axis="y")
    return _finish(fig, ax, path, title, xlabel, ylabel + (" (%)" if percent else ""))


def curves(path: Path, series: Mapping[str, tuple], *, title: str, xlabel: str, ylabel: str,
           hlines: Optional[Mapping[str, object]] = None, logx: bool = False) -> Path:
    """Lines with an optional band, e.g. a metric over attack iterations (mean ± std over seeds).

    ``series[name] = (x, y)`` or ``(x, y, spread)``: the band is y ± spread. ``hlines[name]`` draws
    a dashed horizontal reference (a single-step attack, the random recommender): a value, or
    ``(value, series_name)`` to draw it in that series' colour (a model's baseline)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=120)
    colors = {}
    for name, xs in series.items():
        x, y = list(xs[0]), [float(v) for v in xs[1]]
        (line,) = ax.plot(x, y, marker="o" if len(x) <= 20 else None, markersize=3, label=name)
        colors[name] = line.get_color()
        if len(xs) > 2 and xs[2] is not None:
            s = [float(v) for v in xs[2]]
            ax.fill_between(x, [a - b for a, b in zip(y, s)], [a + b for a, b in zip(y, s)],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    styles = ("--", ":", "-.")
    for i, (name, value) in enumerate((hlines or {}).items()):
        value, owner = value if isinstance(value, tuple) else (value, None)
        if owner is not None and owner not in colors:
            raise ValueError(f"hlines[{name!r}] names series {owner!r}, which is not in series")
        color = colors[owner] if owner is not None else f"C{len(series) + i}"
        ax.axhline(float(value), linestyle=styles[i % len(styles)], color=color, label=name)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    return _finish(fig, ax, path, title, xlabel, ylabel)


def histograms(path: Path, series: Mapping[str, Sequence[float]], *, title: str, xlabel: str,
               bins: Sequence[float], logy: bool = True) -> Path:
    """Overlaid step histograms (share of values per bin), e.g. rank changes under a perturbation;
    values outside ``bins`` are counted in the first or last bin, so nothing drops out."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=120)
    edges = np.asarray(list(bins), dtype=np.float64)
    for name, values in series.items():
        v = np.clip(np.asarray(list(values), dtype=np.float64), edges[0], edges[-1])
        weights = np.full(len(v), 100.0 / max(len(v), 1))
        ax.hist(v, bins=edges, weights=weights, histtype="step", linewidth=1.5, label=name)
    if logy:
        ax.set_yscale("log")
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.grid(alpha=0.3)
    return _finish(fig, ax, path, title, xlabel, "test cases (%)")
