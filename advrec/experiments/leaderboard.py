"""A grid's leaderboard (``advrec report RUN_DIR``), for the two experiments whose grids pit
models against attacks at budgets:

- poisoning (``poison``): every victim × attack × size, the targets' exposure under attack against
  the same victim fitted on the clean log, the change, and its significance (targets paired
  across seeds and pools; a cell's ``poison.json`` keeps per target the clean and poisoned HR@K);
- embedding attacks (``attack``, MSAP): every model × attack × budget (and any other setting the
  grid varies), nDCG@K under attack against the clean model, the relative drop, and its
  significance (test users paired across seeds; ``msap.json`` keeps per user nDCG@K).

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
ATTACK_COLUMNS = ("model", "attack", "eps", "setting", "pairs", "clean", "attacked", "drop", "relative drop",
                  "p (Wilcoxon)")
BOARDS = ("poison", "attack")


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
        raise ValueError(f"{run_dir}: not a poisoning grid (it runs {experiment!r})")
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


def attack_rows(run_dir: Union[str, Path], metric: str = "nDCG") -> List[Dict[str, Any]]:
    """One row per (model, attack, eps, other grid settings): nDCG@K of the test users on the clean
    model and under the attack, averaged over every (seed, user) pair of every cell, the drop, its
    share of the clean value and the Wilcoxon p of the pairs; most damaging attacks first."""
    if metric != "nDCG":
        raise ValueError(f"metric: an embedding-attack board pairs users' nDCG, got {metric!r}")
    run_dir = Path(run_dir)
    experiment, cells = _cells(run_dir)
    if experiment != "attack":
        raise ValueError(f"{run_dir}: not an embedding-attack grid (it runs {experiment!r})")
    pairs: Dict[Tuple[str, str, float, str], List[Tuple[float, float]]] = {}
    seen = set()
    for cell in cells:
        if cell["folder"] in seen:
            continue
        seen.add(cell["folder"])
        report = json.loads((run_dir / cell["folder"] / "msap.json").read_text())
        setting = ", ".join(f"{k}={v}" for k, v in cell["values"].items() if k not in ("seeds", "eps"))
        eps = float(report["config"]["eps"])
        for seed in report["seeds"]:
            for model, record in seed["models"].items():
                conditions = record["conditions"]
                clean = conditions["clean"].get("user_nDCG")
                if not clean:
                    raise ValueError(f"{cell['folder']}/msap.json: no per-user nDCG (written before reports "
                                     "kept it; run the grid again)")
                for attack, c in conditions.items():
                    if attack != "clean":
                        pairs.setdefault((model, attack, eps, setting), []).extend(zip(clean, c["user_nDCG"]))
    rows = []
    for (model, attack, eps, setting), values in pairs.items():
        clean, after = (np.array(v, dtype=np.float64) for v in zip(*values))
        _, p = wilcoxon(after, clean)
        drop = float(clean.mean() - after.mean())
        rows.append({"model": model, "attack": attack, "eps": eps, "setting": setting or "-",
                     "pairs": len(values), "clean": float(clean.mean()), "attacked": float(after.mean()),
                     "drop": drop, "relative drop": drop / clean.mean() if clean.mean() > 0 else float("nan"),
                     "p (Wilcoxon)": p})
    rows.sort(key=lambda r: (-r["relative drop"], r["model"], r["attack"], r["eps"], r["setting"]))
    return rows


def board_of(run_dir: Union[str, Path]) -> str:
    """Which board a grid gets ('poison' or 'attack'); ValueError for the others."""
    experiment, _ = _cells(Path(run_dir))
    if experiment not in BOARDS:
        raise ValueError(f"{run_dir}: leaderboards exist for poisoning and embedding-attack grids; this grid "
                         f"runs {experiment!r}")
    return experiment


def default_metric(board: str) -> str:
    """The metric a board shows unless told."""
    return "HR@50" if board == "poison" else "nDCG"


def rows_of(run_dir: Union[str, Path], metric: str | None = None) -> List[Dict[str, Any]]:
    """The leaderboard rows of any grid that has a board."""
    board = board_of(run_dir)
    metric = metric or default_metric(board)
    return poison_rows(run_dir, metric) if board == "poison" else attack_rows(run_dir, metric)


def render(rows: List[Dict[str, Any]], metric: str = "HR@50", markdown: bool = False, board: str = "poison") -> str:
    if board == "attack":
        head = ("Test users' nDCG@K on each model under each attack against the clean model (pairs: seed x "
                "user; drop: clean - attacked; p: two-sided Wilcoxon signed-rank), most damaging first")
        return head + "\n\n" + format_table(rows, ATTACK_COLUMNS, markdown=markdown, digits=4)
    head = (f"Targets' {metric} on each victim refitted on the poisoned log against the clean one (pairs: "
            "seed x pool x target; p: two-sided Wilcoxon signed-rank), most successful attacks first")
    return head + "\n\n" + format_table(rows, COLUMNS, markdown=markdown, digits=4)


def write(run_dir: Union[str, Path], metric: str | None = None) -> List[Path]:
    """``leaderboard.md`` (and, with matplotlib, ``leaderboard.png``: per model the change each
    attack makes at the largest budget) in ``run_dir``; returns the files."""
    run_dir = Path(run_dir)
    board = board_of(run_dir)
    metric = metric or default_metric(board)
    rows = rows_of(run_dir, metric)
    files = [run_dir / "leaderboard.md"]
    files[0].write_text(f"# Leaderboard of {run_dir.name}\n\n{render(rows, metric, markdown=True, board=board)}\n")
    if have_matplotlib() and rows:
        who, budget, change = ("victim", "size", "change") if board == "poison" else ("model", "eps", "relative drop")
        largest = max(r[budget] for r in rows)
        models = sorted({r[who] for r in rows})
        attacks = sorted({r["attack"] for r in rows})
        at: Dict[Tuple[str, str], float] = {}
        for r in rows:              # with other settings in the grid, the first (strongest) row speaks
            if r[budget] == largest:
                at.setdefault((r[who], r["attack"]), r[change])
        title = (f"{metric} gained by the targets, {largest:.0%} fake users" if board == "poison"
                 else f"nDCG@K lost to each attack, eps = {largest:g}")
        files.append(grouped_bars(run_dir / "leaderboard.png", models,
                                  {a: [at.get((m, a), float("nan")) for m in models] for a in attacks},
                                  title=title, xlabel=who, ylabel=f"{metric} {change}" + (" (%)" if board == "attack" else ""),
                                  percent=board == "attack"))
    return files


__all__ = ["poison_rows", "attack_rows", "rows_of", "board_of", "render", "write", "COLUMNS", "ATTACK_COLUMNS",
           "BOARDS"]
