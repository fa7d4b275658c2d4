"""The poisoning report: per-seed records of ``poison.run_poison`` aggregated over seeds, per target
pool (unpopular, all), into the attack x victim table, target HR@50 and prediction shift against
attack size, the clean users' nDCG@10 and RMSE changes, the seconds per retraining and the issue's acceptance
checks; as terminal text, Markdown, JSON and PNG figures.

Every number is first the mean over a seed's targets, then the mean ± sample standard deviation
of those over seeds. "before" is the victim fitted on the clean log, "after" the same victim
refitted from scratch on the poisoned one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..report import curves, format_table
from ..report.aggregate import fmt_mean_std, mean_std
from .poison import CONTROL, CRAFTED_ON, HAND_CRAFTED, IMPLICIT_VICTIMS, OPTIMISED, PUSH_ATTACKS, PoisonResult, applies
from .records import Check
from .report_files import ReportFiles

#: the attack x victim table's size unless the config names one: the largest size up to this
TABLE_SIZE_MAX = 0.05
#: what a measure is called in the tables
LABELS = {"HR@10": "HR@10", "HR@20": "HR@20", "HR@50": "HR@50", "MeanRank": "mean rank", "shift": "pred. shift",
          "rmse": "test RMSE", "ndcg": "test nDCG@10", "seconds": "s / fit"}
#: the measures of a fit as a whole (not per target)
FIT_MEASURES = ("rmse", "ndcg", "seconds")


# ----------------------------------------------------------------------------- numbers

def sizes(result: PoisonResult) -> List[float]:
    """The attack sizes, smallest first."""
    return sorted(float(s) for s in result.config.sizes)


def table_size(result: PoisonResult) -> float:
    """The size of the attack x victim table and of the checks: the config's ``table_size``, else
    the largest size <= 5%, else the smallest."""
    if result.config.table_size is not None:
        return float(result.config.table_size)
    small = [s for s in sizes(result) if s <= TABLE_SIZE_MAX + 1e-12]
    return small[-1] if small else sizes(result)[0]


def pools(result: PoisonResult) -> List[str]:
    """The target pools, in the config's order."""
    return list(result.config.target_pools)


def _target_mean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def clean_values(result: PoisonResult, pool: str, victim: str, measure: str) -> np.ndarray:
    """Per seed, the clean victim's ``measure`` on ``pool``'s targets (an exposure measure,
    ``rmse``, ``ndcg``, ``seconds``; ``shift`` is 0 by definition, NaN for an implicit victim),
    exposure averaged over the targets."""
    out = []
    for s in result.seeds:
        rec = s.pools[pool].victims[victim].clean
        if measure == "shift":
            out.append(float("nan") if victim in IMPLICIT_VICTIMS else 0.0)
        elif measure in FIT_MEASURES:
            out.append(getattr(rec, measure))
        else:
            out.append(_target_mean(rec.exposure[measure]))
    return np.asarray(out, dtype=np.float64)


def cell_values(result: PoisonResult, pool: str, victim: str, attack: str, size: float, measure: str) -> np.ndarray:
    """Per seed, ``measure`` of one cell on ``pool``'s targets (an exposure measure or ``shift``:
    the mean over the targets; ``rmse``, ``ndcg``, ``seconds``: the cell's); NaN where the victim
    cannot take the attack (``poison.applies``)."""
    if not applies(attack, victim):
        return np.full(len(result.seeds), np.nan)
    out = []
    for s in result.seeds:
        cell = s.pools[pool].victims[victim].cell(attack, size)
        if measure == "shift":
            out.append(_target_mean(cell.shift))
        elif measure in FIT_MEASURES:
            out.append(getattr(cell, measure))
        else:
            out.append(_target_mean(cell.exposure[measure]))
    return np.asarray(out, dtype=np.float64)


def _cell(values: np.ndarray, digits: int = 4, sign: bool = False) -> str:
    """mean ± std over seeds; "—" where nothing was measured (an implicit victim's prediction
    shift or RMSE, an attack a victim cannot take)."""
    if not np.isfinite(np.asarray(values, dtype=np.float64)).any():
        return "—"
    mean, std = mean_std(values)
    mean, std = float(mean), float(std)
    if sign and math.isfinite(mean):
        return f"{mean:+.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")
    return fmt_mean_std(mean, std, digits)


def _pct(size: float) -> str:
    return f"{100 * size:g}%"


def _n_fake(result: PoisonResult, pool: str, victim: str, attack: str, size: float) -> str:
    counts = sorted({s.pools[pool].victims[victim].cell(attack, size).n_fake for s in result.seeds})
    return "/".join(str(c) for c in counts)


def _push(result: PoisonResult) -> List[str]:
    return [a for a in result.config.attacks if a in PUSH_ATTACKS]


def _explicit(result: PoisonResult) -> List[str]:
    """The run's victims that predict ratings (prediction shift, RMSE)."""
    return [v for v in result.config.victims if v not in IMPLICIT_VICTIMS]


def _rows(result: PoisonResult, victims: Optional[Sequence[str]] = None):
    """(pool, victim, attack) in table order: pool, then victim, then attack; only the attacks
    each victim can take."""
    for pool in pools(result):
        for victim in (result.config.victims if victims is None else victims):
            for attack in result.config.attacks:
                if applies(attack, victim):
                    yield pool, victim, attack


# ----------------------------------------------------------------------------- tables

def attack_table(result: PoisonResult, size: Optional[float] = None) -> List[Dict[str, object]]:
    """Per target pool, victim and attack at ``size`` (default ``table_size``): target HR@10,
    HR@50 and mean rank before (clean victim) and after (refitted on the poisoned log), and the
    prediction shift."""
    size = table_size(result) if size is None else size
    rows = []
    for pool, victim, attack in _rows(result):
        row: Dict[str, object] = {"targets": pool, "victim": victim, "attack": attack,
                                  "fake users": _n_fake(result, pool, victim, attack, size)}
        for m in ("HR@10", "HR@50", "MeanRank"):
            digits = 1 if m == "MeanRank" else 4
            row[f"{LABELS[m]} before"] = _cell(clean_values(result, pool, victim, m), digits)
            row[f"{LABELS[m]} after"] = _cell(cell_values(result, pool, victim, attack, size, m), digits)
        row[LABELS["shift"]] = _cell(cell_values(result, pool, victim, attack, size, "shift"), 4, sign=True)
        rows.append(row)
    return rows


def size_table(result: PoisonResult, measure: str) -> List[Dict[str, object]]:
    """``measure`` (``HR@50``, ``shift``, ...) per pool, victim and attack against attack size, the
    clean victim as size 0% (``shift``: the explicit victims only)."""
    rows = []
    for pool, victim, attack in _rows(result, _explicit(result) if measure == "shift" else None):
        row: Dict[str, object] = {"targets": pool, "victim": victim, "attack": attack,
                                  "0% (clean)": _cell(clean_values(result, pool, victim, measure))}
        for s in sizes(result):
            row[_pct(s)] = _cell(cell_values(result, pool, victim, attack, s, measure), 4, sign=measure == "shift")
        rows.append(row)
    return rows


def accuracy_table(result: PoisonResult, measure: str = "ndcg") -> List[Dict[str, object]]:
    """The clean users' test ``measure`` (``ndcg``: nDCG@10, every victim; ``rmse``: the explicit
    victims) of the clean victim and its change (after - before) per pool, attack and size: an
    attack that wrecks every recommendation is not stealthy."""
    rows = []
    label = "RMSE" if measure == "rmse" else "nDCG@10"
    for pool, victim, attack in _rows(result, _explicit(result) if measure == "rmse" else None):
        before = clean_values(result, pool, victim, measure)
        row: Dict[str, object] = {"targets": pool, "victim": victim, "attack": attack, f"{label} clean": _cell(before)}
        for s in sizes(result):
            row[f"Δ at {_pct(s)}"] = _cell(cell_values(result, pool, victim, attack, s, measure) - before, 4, sign=True)
        rows.append(row)
    return rows


def rmse_table(result: PoisonResult) -> List[Dict[str, object]]:
    """``accuracy_table`` of the test RMSE (explicit victims)."""
    return accuracy_table(result, "rmse")


def _optimised(result: PoisonResult) -> List[str]:
    return [a for a in result.config.attacks if a in OPTIMISED]


def transfer_table(result: PoisonResult, size: Optional[float] = None) -> List[Dict[str, object]]:
    """Per target pool and optimised attack at ``size`` (default ``table_size``): the victim it
    was crafted on (white box) and the HR@50 after on every victim of the run, then the
    prediction shift on the explicit ones (the same poisoned log: the victims it was not crafted
    on measure the grey-box transfer); "—" where a victim cannot take the attack (implicit
    profiles on a rating predictor). Empty without optimised attacks."""
    size = table_size(result) if size is None else size
    rows = []
    for pool in pools(result):
        for attack in _optimised(result):
            row: Dict[str, object] = {"targets": pool, "attack": attack, "crafted on": CRAFTED_ON[attack]}
            for measure, victims in (("HR@50", result.config.victims), ("shift", _explicit(result))):
                for victim in victims:
                    row[f"{LABELS[measure]} {victim}"] = _cell(cell_values(result, pool, victim, attack, size, measure),
                                                               4, sign=measure == "shift")
            rows.append(row)
    return rows


def timing_table(result: PoisonResult) -> List[Dict[str, object]]:
    """Seconds per fit of each victim: the clean fit (one per seed), and the refits on the
    poisoned logs (mean ± std over every cell, pool and seed), with how many refits ran and their
    total."""
    rows = []
    first = pools(result)[0]
    for victim in result.config.victims:
        refits = np.asarray([c.seconds for s in result.seeds for p in s.pools.values()
                             for c in p.victims[victim].cells], dtype=np.float64)
        if not len(refits):
            continue
        rows.append({"victim": victim, "clean fit s": _cell(clean_values(result, first, victim, "seconds"), 3),
                     "refit s": _cell(refits, 3), "refits": len(refits), "refits total s": f"{refits.sum():.1f}"})
    return rows


# ----------------------------------------------------------------------------- acceptance

def _seq(values: Sequence[float]) -> str:
    return " → ".join(f"{v:.4f}" for v in values)


def _rises(seq: Sequence[float]) -> bool:
    """Never falls from one size to the next, and ends above where it started."""
    return all(b >= a for a, b in zip(seq, seq[1:])) and seq[-1] > seq[0]


def acceptance(result: PoisonResult) -> List[Check]:
    """Issue 16's checks on the seed means, for each target pool (a check whose attack or victim
    was not run is left out):

    * UserKNN at the table size: the average attack's prediction shift exceeds the random attack's;
    * each optimised attack in the run, on the victim it is crafted on, at the table size,
      unpopular targets only: its prediction shift (an explicit victim; HR@50 on an implicit one)
      exceeds the best hand-crafted attack's of the run (white box: it beats them at the same
      budget on its own victim);
    * every push attack, per victim that takes it: HR@50 and (explicit victims) prediction shift
      never fall as the size grows (from the clean victim, size 0) and end above the clean value;
    * the control, per victim: at every size, |mean over seeds of the change of HR@50| is within
      noise: at most 2 sample std over seeds of that change (0 with one seed), or one real user
      per target (1 / the mean number of eligible users), whichever is larger.
    """
    checks: List[Check] = []
    size = table_size(result)
    victims, attacks = result.config.victims, result.config.attacks
    steps = [0.0] + sizes(result)
    for pool in pools(result):
        head = f"{pool} targets, "
        if "UserKNN" in victims and {"average", "random"} <= set(attacks):
            avg, rnd = (float(cell_values(result, pool, "UserKNN", a, size, "shift").mean())
                        for a in ("average", "random"))
            checks.append(Check(f"{head}UserKNN at {_pct(size)}: average attack's prediction shift > random attack's",
                                avg > rnd, f"{avg:+.4f} vs {rnd:+.4f}", "average > random (Mobasher et al. 2007)"))
        for victim in victims:
            for attack in [a for a in _push(result) if applies(a, victim)]:
                for measure in (("HR@50",) if victim in IMPLICIT_VICTIMS else ("shift", "HR@50")):
                    seq = [float(clean_values(result, pool, victim, measure).mean())]
                    seq += [float(cell_values(result, pool, victim, attack, s, measure).mean()) for s in sizes(result)]
                    checks.append(Check(f"{head}{victim}, {attack}: {LABELS[measure]} rises with attack size",
                                        _rises(seq), f"{_seq(seq)} at {', '.join(_pct(s) for s in steps)}",
                                        "non-decreasing from clean (0%) to every size, last > clean"))
        hand = [a for a in attacks if a in HAND_CRAFTED]
        for attack in _optimised(result):
            own = CRAFTED_ON[attack]
            if pool != "unpopular" or own not in victims or not hand:
                continue
            measure = "HR@50" if own in IMPLICIT_VICTIMS else "shift"
            values = {a: float(cell_values(result, pool, own, a, size, measure).mean()) for a in hand}
            best = max(values, key=lambda a: values[a])
            mine = float(cell_values(result, pool, own, attack, size, measure).mean())
            source = "Tang et al. 2020" if attack == "revadv" else "Li et al. 2016"
            checks.append(Check(f"{head}{own} at {_pct(size)}: {attack}'s {LABELS[measure]} > the best hand-crafted "
                                "attack's", mine > values[best], f"{mine:+.4f} vs {best} {values[best]:+.4f}",
                                "the optimised attack beats the best hand-crafted attack at the same budget on its "
                                f"own victim ({source})"))
        if CONTROL in attacks:
            users = float(np.mean([np.mean(s.pools[pool].eligible) for s in result.seeds]))
            floor = 1.0 / users
            for victim in victims:
                before = clean_values(result, pool, victim, "HR@50")
                parts, holds = [], True
                for s in sizes(result):
                    change = cell_values(result, pool, victim, CONTROL, s, "HR@50") - before
                    std = float(mean_std(change)[1])
                    band = max(2 * std if math.isfinite(std) else 0.0, floor)
                    mean = float(change.mean())
                    holds &= abs(mean) <= band
                    parts.append(f"{_pct(s)}: {mean:+.4f} (band {band:.4f})")
                checks.append(Check(f"{head}{victim}, control (random profiles, no target): HR@50 within noise",
                                    bool(holds), "; ".join(parts),
                                    f"abs(Δ HR@50) <= max(2 std over seeds, 1/{users:.0f} = one user per target)"))
    return checks


# ----------------------------------------------------------------------------- text

def _pool_line(result: PoisonResult, pool: str) -> str:
    cfg = result.config
    counts = [c for s in result.seeds for c in s.pools[pool].target_counts]
    where = (f"the least rated {cfg.unpopular_share:g} of the rated training items" if pool == "unpopular"
             else "all rated training items")
    return f"{pool}: {cfg.n_targets} targets from {where} ({min(counts)} to {max(counts)} training ratings each)"


def render_text(result: PoisonResult, markdown: bool = False, checks: Optional[Sequence[Check]] = None) -> str:
    """Every table of the report as terminal text (or Markdown); ``checks``: the acceptance to
    show, by default computed from the records."""
    cfg = result.config
    head = (lambda t: f"## {t}") if markdown else (lambda t: f"{t}\n{'-' * len(t)}")
    table = lambda rows, columns=None: format_table(rows, columns, markdown=markdown)  # noqa: E731
    first = result.seeds[0]
    some = first.pools[pools(result)[0]].victims[cfg.victims[0]]
    size = table_size(result)
    fakes = ", ".join(f"{_pct(s)} = {some.cell(cfg.attacks[0], s).n_fake}" for s in sizes(result))
    setup = [
        f"Per seed a random {1 - cfg.test_share:g}/{cfg.test_share:g} split of the ratings and targets drawn from "
        f"each pool ({'; '.join(_pool_line(result, p) for p in pools(result))}); every fake user rates every "
        "target r_max (push).",
        f"{first.n_real_users} real users; fake users per size: {fakes}.",
        f"Filler: {first.filler} items per profile"
        + (" (the real users' mean profile length)" if cfg.filler is None else "")
        + ("; bandwagon adds its 10 most rated items." if "bandwagon" in cfg.attacks else "."),
        f"{CONTROL}: the random attack's fake users without their target ratings." if CONTROL in cfg.attacks else "",
        (f"Optimised fake profiles ({'; '.join(f'{a} on {CRAFTED_ON[a]}' for a in _optimised(result))}: "
         "pga and sgld by Li et al. 2016, revadv by Tang et al. 2020), crafted white box with the run's settings "
         "and seed; revadv's profiles are implicit (no ratings), so only the implicit victims take them."
         if _optimised(result) else ""),
        (f"The implicit victims ({', '.join(v for v in cfg.victims if v in IMPLICIT_VICTIMS)}) are fitted on the "
         "same logs with every rating a positive interaction; they predict no rating, so they have no prediction "
         "shift and no RMSE (—)." if any(v in IMPLICIT_VICTIMS for v in cfg.victims) else ""),
        "Victims fitted once on the clean log, then refitted from scratch on every poisoned log with the same "
        f"settings ({'; '.join(f'{v} {rec.settings}' for v, rec in _victims(result))}).",
        "Target measures over the real users who have not rated the target, averaged over targets; mean ± std "
        f"over {len(result.seeds)} seed(s) {[s.seed for s in result.seeds]}. Run took {result.seconds / 60:.1f} min.",
    ]
    parts = [
        f"Data: {result.data}.",
        " ".join(p for p in setup if p),
        head(f"Attack x victim at {_pct(size)} of the users"),
        "targets: the pool the targets were drawn from; before: the clean victim; after: refitted on the poisoned "
        "log; pred. shift: poisoned minus clean predicted rating of the targets (explicit victims).",
        table(attack_table(result)),
        *([head(f"Transfer of the optimised attacks at {_pct(size)} of the users"),
           "crafted on: the victim the attack was optimised against (white box, the run's own settings and seed); "
           "the same poisoned log is scored on every victim that can take it: the others measure the grey-box "
           "transfer.",
           table(transfer_table(result))] if _optimised(result) else []),
        head("Target HR@50 against attack size"),
        table(size_table(result, "HR@50")),
        head("Prediction shift against attack size"),
        table(size_table(result, "shift")),
        head("Clean users' test nDCG@10"),
        "nDCG@10 of every real user's test items, ranked among the items they have no training interaction "
        "with, clean, and its change after each attack (negative: worse).",
        table(accuracy_table(result, "ndcg")),
        *([head("Clean users' test RMSE"),
           "RMSE of the explicit victims' predictions on the test ratings (all real users), clean, and its change "
           "after each attack (positive: worse).",
           table(rmse_table(result))] if _explicit(result) else []),
        head("Seconds per retraining"),
        table(timing_table(result)),
        head("Acceptance"),
        table([{"check": c.name, "holds": c.verdict(), "measured": c.detail, "target": c.target}
               for c in (acceptance(result) if checks is None else checks)]),
    ]
    return "\n\n".join(parts)


def _victims(result: PoisonResult):
    """(name, record) of each victim on the first seed's first pool (its settings are every fit's)."""
    first = result.seeds[0].pools[pools(result)[0]]
    return [(v, first.victims[v]) for v in result.config.victims]


def render_markdown(result: PoisonResult) -> str:
    return render_text(result, markdown=True)


# ----------------------------------------------------------------------------- figures

def figures(result: PoisonResult, out: Path) -> List[Path]:
    """Per pool and victim: target HR@50 and prediction shift against attack size, one line per
    attack (mean over seeds, ± std band with several seeds), size 0 the clean victim."""
    out, files = Path(out), []
    x = [0.0] + [100 * s for s in sizes(result)]
    several = len(result.seeds) > 1
    for pool in pools(result):
        for victim in result.config.victims:
            for measure, stem in (("HR@50", "hr50"),) + ((("shift", "shift"),) if victim not in IMPLICIT_VICTIMS
                                                          else ()):
                series = {}
                for attack in [a for a in result.config.attacks if applies(a, victim)]:
                    per_seed = np.column_stack([clean_values(result, pool, victim, measure)]
                                               + [cell_values(result, pool, victim, attack, s, measure)
                                                  for s in sizes(result)])
                    mean, std = mean_std(per_seed)
                    series[attack] = (x, mean, std if several else None)
                files.append(curves(out / f"{stem}_{victim}_{pool}.png", series,
                                    title=f"{victim}, {pool} targets: {LABELS[measure]} against attack size",
                                    xlabel="fake users (% of real users)", ylabel=f"target {LABELS[measure]}"))
    return files


# ----------------------------------------------------------------------------- files

FILES = ReportFiles("poison", "Poisoning", PoisonResult, acceptance, render_text, figures, Check.to_row)
report_payload = FILES.payload
report_json = FILES.json
report_markdown = FILES.markdown
write_report = FILES.write
result_from_json = FILES.result_from_json
checks_from_json = FILES.checks_from_json


__all__: Sequence[str] = ("acceptance", "sizes", "table_size", "pools", "clean_values", "cell_values", "attack_table",
                          "transfer_table", "size_table", "accuracy_table", "rmse_table", "timing_table",
                          "render_text", "render_markdown", "figures",
                          "report_payload", "report_json", "report_markdown", "write_report", "result_from_json",
                          "checks_from_json")
