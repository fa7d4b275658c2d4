"""A grid's leaderboard (``advrec report RUN_DIR``): for a poisoning grid, every victim × attack ×
size, the targets' exposure under attack against the same victim fitted on the clean log, the
change, and its significance (targets paired across seeds and pools).

Poisoning is the grid the suites run most (victims × attacks × budgets × seeds); a cell's report
(``poison.json``) keeps per target the clean and the poisoned HR@K, which is what is paired here.
Other experiments' grids are refused by name until they get their own board.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from ..metrics.significance import wilcoxon
from ..report import format_table, grouped_bars, have_matplotlib

COLUMNS = ("victim", "attack", "size", "pairs", "clean", "attacked", "change", "relative", "p (Wilcoxon)")


def _cells(run_dir: Path) -> Tuple[str, List[Dict[str, Any]]]:
    grid = run_dir / "grid.json"
    if not grid.is_file():
        raise ValueError(f"{run_dir}: no grid.json (run a grid with --out {run_dir} first)")
    payload = json.loads(grid.read_text())
    return payload["experiment"], payload["cells"]


def poison_rows(run_dir: Union[str, Path], metric: str = "HR@50") -> List[Dict[str, Any]]:
    """One row per (victim, attack, size): the targets' ``metric`` on the clean and the poisoned
    victim, averaged over every (seed, pool, target) pair of every cell, their change and the
    Wilcoxon p of the pairs; most successful attacks first."""
    run_dir = Path(run_dir)
    experiment, cells = _cells(run_dir)
    if experiment != "poison":
        raise ValueError(f"{run_dir}: a leaderboard exists for poisoning grids; this grid runs {experiment!r}")
    pairs: Dict[Tuple[str, str, float], List[Tuple[float, float]]] = {}
    seen = set()
    for cell in cells:
        if cell["folder"] in seen:      # two grid points with one config share a folder
            continue
        seen.add(cell["folder"])
        report = json.loads((run_dir / cell["folder"] / "poison.json").read_text())
        for seed in report["seeds"]:
            for pool in seed["pools"].values():
                for victim, record in pool["victims"].items():
                    clean = record["clean"]["exposure"][metric]
                    for c in record["cells"]:
                        after = c["exposure"][metric]
                        pairs.setdefault((victim, c["attack"], c["size"]), []).extend(zip(clean, after))
    rows = []
    for (victim, attack, size), values in pairs.items():
        clean, after = (np.array(v, dtype=np.float64) for v in zip(*values))
        _, p = wilcoxon(after, clean)
        change = float(after.mean() - clean.mean())
        rows.append({"victim": victim, "attack": attack, "size": size, "pairs": len(values),
                     "clean": float(clean.mean()), "attacked": float(after.mean()), "change": change,
                     "relative": change / clean.mean() if clean.mean() > 0 else float("nan"), "p (Wilcoxon)": p})
    rows.sort(key=lambda r: (-r["change"], r["victim"], r["attack"], r["size"]))
    return rows


def render(rows: List[Dict[str, Any]], metric: str = "HR@50", markdown: bool = False) -> str:
    head = (f"Targets' {metric} on each victim refitted on the poisoned log against the clean one (pairs: "
            "seed x pool x target; p: two-sided Wilcoxon signed-rank), most successful attacks first")
    return head + "\n\n" + format_table(rows, COLUMNS, markdown=markdown, digits=4)


def write(run_dir: Union[str, Path], metric: str = "HR@50") -> List[Path]:
    """``leaderboard.md`` (and, with matplotlib, ``leaderboard.png``: the change per victim and
    attack at the largest size) in ``run_dir``; returns the files."""
    run_dir = Path(run_dir)
    rows = poison_rows(run_dir, metric)
    files = [run_dir / "leaderboard.md"]
    files[0].write_text(f"# Leaderboard of {run_dir.name}\n\n{render(rows, metric, markdown=True)}\n")
    if have_matplotlib() and rows:
        largest = max(r["size"] for r in rows)
        victims = sorted({r["victim"] for r in rows})
        attacks = sorted({r["attack"] for r in rows})
        at = {(r["victim"], r["attack"]): r["change"] for r in rows if r["size"] == largest}
        files.append(grouped_bars(run_dir / "leaderboard.png", victims,
                                  {a: [at.get((v, a), float("nan")) for v in victims] for a in attacks},
                                  title=f"{metric} gained by the targets, {largest:.0%} fake users",
                                  xlabel="victim", ylabel=f"{metric} change", percent=False))
    return files


__all__ = ["poison_rows", "render", "write", "COLUMNS"]
