"""The detection report: per-seed records of ``detect.run_detect`` aggregated over seeds into the
detection table (held-out attack x detector: precision, recall, F1, AUC), recall and precision
against attack size and filler, the defence tables (the targets' HR@50 and the clean users'
nDCG@10 and RMSE for no defence, each detector + retrain and trimmed ALS, and the users each
detector removed), the optimised attack no detector trained on, the seconds and issue 17's
acceptance checks; as terminal text, Markdown, JSON and PNG figures.

Every number is first the mean over a seed's targets (defences) or test logs (detection), then
the mean ± sample standard deviation of those over seeds.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..report import curves, format_table
from ..report.aggregate import fmt_mean_std, mean_std
from .detect import DETECTORS, NO_DEFENCE, SUPERVISED, TRIMMED, DetectResult, table_filler, table_size
from .records import Check
from .report_files import ReportFiles

#: detector names as the tables print them
DETECTOR_LABELS = {"svm": "SVM", "forest": "forest", "degreesad": "DegreeSAD", "degreesad-svm": "DegreeSAD (SVM)",
                   "svm-or-degreesad": "SVM or DegreeSAD (SVM)",
                   "svm-or-degreesad-focus": "SVM or DegreeSAD (SVM), target focus",
                   "forest-or-degreesad-focus": "forest or DegreeSAD (SVM), target focus",
                   "pca": "PCA-SelectUsers"}
#: detection measures, in table order
DETECTION = ("precision", "recall", "f1", "auc")
DETECTION_LABELS = {"precision": "precision", "recall": "recall", "f1": "F1", "auc": "AUC"}
#: the supervised detectors' acceptance regime (issue 17): attack types, smallest size and filler
CHECK_TYPES = ("average", "bandwagon")
CHECK_MIN = 0.03
CHECK_RECALL = CHECK_PRECISION = 0.8


def defence_label(result: DetectResult, name: str) -> str:
    """How a fit of the defence part is called in the tables."""
    if name == NO_DEFENCE:
        return "no defence"
    if name == TRIMMED:
        return f"trimmed ALS ({100 * result.config.trim:g}%)"
    return f"{DETECTOR_LABELS[name]} + retrain"


def fits(result: DetectResult) -> List[str]:
    """The fits of each defence cell: no defence, then the config's defences."""
    return [NO_DEFENCE] + list(result.config.defences)


def detector_defences(result: DetectResult) -> List[str]:
    """The config's defences that are detectors (remove the flagged users, refit)."""
    return [d for d in result.config.defences if d in DETECTORS]


def sizes(result: DetectResult) -> List[float]:
    return sorted(float(s) for s in result.config.sizes)


def fillers(result: DetectResult) -> List[float]:
    return sorted(float(f) for f in result.config.fillers)


def _pct(x: float) -> str:
    return f"{100 * x:g}%"


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _cell(values: np.ndarray, digits: int = 3, sign: bool = False) -> str:
    """mean ± std over seeds; "—" where nothing was measured."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return "—"
    values = values[np.isfinite(values)]
    mean, std = (float(x) for x in mean_std(values))
    if sign:
        return f"{mean:+.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")
    return fmt_mean_std(mean, std, digits)


def _count(values: np.ndarray) -> str:
    """A count per seed: the count itself with one seed (or when every seed agrees), else mean ± std."""
    values = np.asarray(values, dtype=np.float64)
    if len(set(values.tolist())) == 1 and float(values[0]).is_integer():
        return str(int(values[0]))
    return _cell(values, 1)


# ----------------------------------------------------------------------------- numbers

def detection_values(result: DetectResult, detector: str, held_out: str, size: float, filler: float,
                     measure: str) -> np.ndarray:
    """Per seed, ``measure`` (``precision``, ``recall``, ``f1``, ``auc``, ``n_fake``, ``n_flagged``)
    of ``detector`` on the held-out attack at ``size`` and ``filler``, the mean over the seed's
    test logs (NaN ones, e.g. precision with nothing flagged, left out of that mean)."""
    out = []
    for s in result.seeds:
        cells = [c for c in s.detection[detector].cells
                 if c.held_out == held_out and c.size == size and c.filler == filler]
        out.append(_nanmean([getattr(c, measure) for c in cells]))
    return np.asarray(out, dtype=np.float64)


def clean_values(result: DetectResult, measure: str) -> np.ndarray:
    """Per seed, the clean fit's ``measure`` (``hr50``: the mean over the targets; ``ndcg``, ``rmse``,
    ``seconds``)."""
    out = []
    for s in result.seeds:
        rec = s.defence.clean
        out.append(_nanmean(rec.hr50) if measure == "hr50" else getattr(rec, measure))
    return np.asarray(out, dtype=np.float64)


def fit_values(result: DetectResult, attack: str, size: float, fit: str, measure: str) -> np.ndarray:
    """Per seed, ``measure`` of one fit (``NO_DEFENCE`` or a defence) on ``attack`` at ``size``
    (``hr50``: the mean over the targets; ``ndcg``, ``rmse``, ``seconds``, ``removed_real``,
    ``removed_fake``, ``rows_real``, ``rows_fake``)."""
    out = []
    for s in result.seeds:
        rec = s.defence.cell(attack, size).fits[fit]
        out.append(_nanmean(rec.hr50) if measure == "hr50" else getattr(rec, measure))
    return np.asarray(out, dtype=np.float64)


def _n_fake(result: DetectResult, attack: str, size: float) -> str:
    return "/".join(str(n) for n in sorted({s.defence.cell(attack, size).n_fake for s in result.seeds}))


def _grid_fakes(result: DetectResult, detector: str, held_out: str, size: float, filler: float) -> str:
    counts = sorted({c.n_fake for s in result.seeds for c in s.detection[detector].cells
                     if c.held_out == held_out and c.size == size and c.filler == filler})
    return "/".join(str(n) for n in counts)


# ----------------------------------------------------------------------------- tables

def detection_table(result: DetectResult) -> List[Dict[str, object]]:
    """Per held-out attack type and detector, at the table size and filler: the types it was
    trained on, the fakes in the test log, precision, recall, F1 and AUC (mean ± std over seeds)."""
    size, filler = table_size(result.config), table_filler(result.config)
    rows = []
    for attack in result.config.attacks:
        for det in result.config.detectors:
            first = result.seeds[0].detection[det].cell(attack, size, filler)
            row: Dict[str, object] = {"held-out attack": attack, "detector": DETECTOR_LABELS[det],
                                      "trained on": ", ".join(first.trained_on) if det in SUPERVISED
                                      else "— (unsupervised)",
                                      "fake users": _grid_fakes(result, det, attack, size, filler)}
            for m in DETECTION:
                row[DETECTION_LABELS[m]] = _cell(detection_values(result, det, attack, size, filler, m))
            rows.append(row)
    return rows


def grid_table(result: DetectResult) -> List[Dict[str, object]]:
    """Recall / precision (means over seeds) per detector, held-out attack and filler, against attack size."""
    rows = []
    for det in result.config.detectors:
        for attack in result.config.attacks:
            for f in fillers(result):
                row: Dict[str, object] = {"detector": DETECTOR_LABELS[det], "held-out attack": attack,
                                          "filler": _pct(f)}
                for s in sizes(result):
                    r, p = (_nanmean(detection_values(result, det, attack, s, f, m)) for m in ("recall", "precision"))
                    row[f"R / P at {_pct(s)}"] = f"{r:.2f} / {p:.2f}".replace("nan", "—")
                rows.append(row)
    return rows


def defence_table(result: DetectResult) -> List[Dict[str, object]]:
    """The targets' HR@50 per attack and size: the clean model, no defence and every defence."""
    rows = []
    for attack in result.config.attacks:
        for s in sizes(result):
            row: Dict[str, object] = {"attack": attack, "size": _pct(s), "fake users": _n_fake(result, attack, s),
                                      "clean": _cell(clean_values(result, "hr50"), 4)}
            for fit in fits(result):
                row[defence_label(result, fit)] = _cell(fit_values(result, attack, s, fit, "hr50"), 4)
            rows.append(row)
    return rows


def accuracy_table(result: DetectResult, measure: str = "ndcg") -> List[Dict[str, object]]:
    """The clean users' test ``measure`` (``ndcg``: nDCG@10; ``rmse``) of the clean model and its
    change (fit - clean) for no defence and every defence, per attack and size: what a defence
    costs (a detector that removes real users, trimming that drops their surprising ratings)."""
    label = "RMSE" if measure == "rmse" else "nDCG@10"
    before = clean_values(result, measure)
    rows = []
    for attack in result.config.attacks:
        for s in sizes(result):
            row: Dict[str, object] = {"attack": attack, "size": _pct(s), f"{label} clean": _cell(before, 4)}
            for fit in fits(result):
                row[f"Δ {defence_label(result, fit)}"] = _cell(fit_values(result, attack, s, fit, measure) - before,
                                                               4, sign=True)
            rows.append(row)
    return rows


def removal_table(result: DetectResult) -> List[Dict[str, object]]:
    """Per attack, size and detector defence: the real and the fake users it removed (of the
    fakes injected), and the rows trimmed ALS dropped in its last sweep, real and fake."""
    rows = []
    for attack in result.config.attacks:
        for s in sizes(result):
            row: Dict[str, object] = {"attack": attack, "size": _pct(s), "fake users": _n_fake(result, attack, s)}
            for det in detector_defences(result):
                real, fake = (_count(fit_values(result, attack, s, det, m)) for m in ("removed_real", "removed_fake"))
                row[f"{DETECTOR_LABELS[det]}: real / fake removed"] = f"{real} / {fake}"
            if TRIMMED in result.config.defences:
                real, fake = (_count(fit_values(result, attack, s, TRIMMED, m)) for m in ("rows_real", "rows_fake"))
                row["trimmed rows: real / fake"] = f"{real} / {fake}"
            rows.append(row)
    return rows


def unseen_table(result: DetectResult) -> List[Dict[str, object]]:
    """Per optimised attack and defence detector: precision, recall, F1, AUC (empty without unseen attacks)."""
    rows = []
    for attack in result.config.unseen_attacks:
        for det in detector_defences(result):
            recs = [next(u for u in s.unseen if u.attack == attack) for s in result.seeds]
            row: Dict[str, object] = {"attack": attack, "size": _pct(recs[0].size), "filler": recs[0].filler,
                                      "fake users": "/".join(str(n) for n in sorted({r.n_fake for r in recs})),
                                      "detector": DETECTOR_LABELS[det],
                                      "trained on": ", ".join(result.config.attacks) if det in SUPERVISED
                                      else "— (unsupervised)"}
            for m in DETECTION:
                row[DETECTION_LABELS[m]] = _cell(np.asarray([r.detection[det][m] for r in recs]))
            row["crafting s"] = _cell(np.asarray([r.seconds for r in recs]), 1)
            rows.append(row)
    return rows


def timing_table(result: DetectResult) -> List[Dict[str, object]]:
    """Seconds: each detector's leave-one-type-out grid per seed; each defence detector's training;
    each fit of the defence part (mean ± std over cells and seeds)."""
    rows: List[Dict[str, object]] = []
    for det in result.config.detectors:
        rows.append({"what": f"{DETECTOR_LABELS[det]}: leave-one-type-out grid (per seed)",
                     "seconds": _cell(np.asarray([s.detection[det].seconds for s in result.seeds]), 1)})
    for det in detector_defences(result):
        if det in SUPERVISED:
            secs = [d.seconds for s in result.seeds for d in s.defence.detectors if d.detector == det]
            rows.append({"what": f"{DETECTOR_LABELS[det]}: training a defence detector",
                         "seconds": _cell(np.asarray(secs), 2)})
    rows.append({"what": "ExplicitMF on the clean log", "seconds": _cell(clean_values(result, "seconds"), 2)})
    for fit in fits(result):
        secs = [s.defence.cell(a, z).fits[fit].seconds for s in result.seeds for a in result.config.attacks
                for z in sizes(result)]
        what = ("ExplicitMF refit on the poisoned log" if fit == NO_DEFENCE
                else f"{defence_label(result, fit)}" + (": score, filter, refit" if fit in DETECTORS else ": fit"))
        rows.append({"what": what, "seconds": _cell(np.asarray(secs), 2)})
    return rows


# ----------------------------------------------------------------------------- acceptance

def acceptance(result: DetectResult) -> List[Check]:
    """Issue 17's checks on the seed means:

    * per supervised detector of the run and hand-crafted type among average and bandwagon
      (held out): at every size >= 3% and filler >= 3% of the grid, mean recall >= 0.8 and mean
      precision >= 0.8 (undecided when the grid has no such cell);
    * per detector defence and hand-crafted attack: at every size, the targets' HR@50 after
      removing the flagged users and refitting is within noise of the clean model's: |mean over
      seeds of the change| <= max(2 sample std over seeds of the change (0 with one seed), 1 / the
      mean number of eligible real users, i.e. one user per target).

    The clean users' nDCG@10 cost is reported in the tables, not checked."""
    cfg = result.config
    checks: List[Check] = []
    grid = [(s, f) for s in sizes(result) for f in fillers(result) if s >= CHECK_MIN - 1e-12 and f >= CHECK_MIN - 1e-12]
    for det in [d for d in cfg.detectors if d in SUPERVISED]:
        for attack in [a for a in CHECK_TYPES if a in cfg.attacks]:
            name = f"{DETECTOR_LABELS[det]}, held-out {attack}: recall and precision >= 0.8 at size and filler >= 3%"
            target = ("mean recall >= 0.8 and mean precision >= 0.8 in every cell (leave one attack type out; "
                      "Burke et al. 2006, Williams et al. 2007)")
            if not grid:
                checks.append(Check(name, None, "no size >= 3% with a filler >= 3% in this run", target))
                continue
            parts, holds = [], True
            for s, f in grid:
                r, p = (float(detection_values(result, det, attack, s, f, m).mean()) for m in ("recall", "precision"))
                ok = r >= CHECK_RECALL and p >= CHECK_PRECISION   # NaN fails
                holds &= ok
                parts.append(f"{_pct(s)}/{_pct(f)}: R {r:.3f} P {p:.3f}" + ("" if ok else " ✗"))
            checks.append(Check(name, bool(holds), "; ".join(parts), target))
    users = float(np.mean([np.mean(s.defence.eligible) for s in result.seeds]))
    floor = 1.0 / users
    before = clean_values(result, "hr50")
    for det in detector_defences(result):
        for attack in cfg.attacks:
            parts, holds = [], True
            for s in sizes(result):
                change = fit_values(result, attack, s, det, "hr50") - before
                std = float(mean_std(change)[1])
                band = max(2 * std if math.isfinite(std) else 0.0, floor)
                mean = float(change.mean())
                ok = abs(mean) <= band
                holds &= ok
                parts.append(f"{_pct(s)}: {mean:+.4f} (band {band:.4f})" + ("" if ok else " ✗"))
            checks.append(Check(f"{defence_label(result, det)}, {attack} attack: targets' HR@50 back to the clean "
                                "model's", bool(holds), "; ".join(parts),
                                f"abs(Δ HR@50 vs clean) <= max(2 std over seeds, 1/{users:.0f} = one user per target) "
                                "at every size"))
    return checks


# ----------------------------------------------------------------------------- text

def render_text(result: DetectResult, markdown: bool = False, checks: Optional[Sequence[Check]] = None) -> str:
    """Every table of the report as terminal text (or Markdown); ``checks``: the acceptance to
    show, by default computed from the records."""
    cfg = result.config
    head = (lambda t: f"## {t}") if markdown else (lambda t: f"{t}\n{'-' * len(t)}")
    table = lambda rows, columns=None: format_table(rows, columns, markdown=markdown)  # noqa: E731
    first = result.seeds[0]
    size, filler = table_size(cfg), table_filler(cfg)
    counts = [c for s in result.seeds for c in s.defence.target_counts]
    supervised = [DETECTOR_LABELS[d] for d in cfg.detectors if d in SUPERVISED]
    setup = [
        f"Per seed a random {1 - cfg.test_share:g}/{cfg.test_share:g} split of the ratings; {first.n_real_users} "
        f"real users in training. Seeds {[s.seed for s in result.seeds]}; mean ± std over seeds. Run took "
        f"{result.seconds / 60:.1f} min.",
        f"Detection (leave one attack type out, `advrec.detection.leave_one_type_out`): the training log's real users "
        f"split in two halves ({first.n_test_users} scored); each detector is trained on poisoned logs of the other "
        f"hand-crafted types built on one half (sizes {', '.join(_pct(s) for s in sizes(result))} of the half's "
        f"users, fillers {', '.join(_pct(f) for f in fillers(result))} of the items, {cfg.n_train_seeds} seed(s)), "
        f"and scored on poisoned logs of the held-out type built on the other half, so no scored user, real or "
        f"fake, was seen in training. {cfg.n_targets} target(s) per log. Thresholds: the SVM's boundary (0), the "
        "forests' majority (0.5), PCA-SelectUsers its 5% least contributing users."
        + (f" Supervised: {', '.join(supervised)}." if supervised else ""),
        f"Defences: {cfg.defence_targets} targets per seed from the least rated {cfg.unpopular_share:g} of the rated "
        f"training items ({min(counts)} to {max(counts)} training ratings each), filler {first.defence.filler} items "
        "per fake profile (the real users' mean profile length; bandwagon adds its 10 most rated items), every fake "
        "user rating every target r_max. ExplicitMF (ALS, default settings) fitted on the clean log, on the poisoned "
        "log (no defence), on the poisoned log without the users a detector flags (refitted from scratch), and by "
        f"trimmed ALS (the {100 * cfg.trim:g}% rows of largest residual dropped every sweep after a warm-up). A "
        "supervised defence detector is trained on poisoned logs of the OTHER attack types only (sizes "
        f"{', '.join(_pct(s) for s in cfg.train_sizes)}, the same filler, other targets and attack seeds), so it "
        "never saw the profiles it removes; PCA-SelectUsers needs no training and flags 5% of the users.",
        f"Target HR@50 over the real users who have not rated the target (about {np.mean(first.defence.eligible):.0f} "
        "per target), averaged over targets; nDCG@10 and RMSE of every real user's test items and ratings.",
    ]
    parts = [
        f"Data: {result.data}.",
        " ".join(setup),
        head(f"Detection at {_pct(size)} of the users, filler {_pct(filler)} of the items (leave one attack type out)"),
        "held-out attack: the type the detector never trained on, scored here; fake users: in the scored log "
        "(half the real users).",
        table(detection_table(result)),
        head("Recall / precision against attack size and filler"),
        "Means over seeds; — where nothing was flagged (precision undefined).",
        table(grid_table(result)),
        head(f"Defences: target HR@50 ({cfg.defence_targets} unpopular targets)"),
        "clean: ExplicitMF on the clean log; the other columns: refitted on the poisoned log as named.",
        table(defence_table(result)),
        head("Clean users' test nDCG@10 per defence"),
        "nDCG@10 of every real user's test items ranked among the items they have no training rating of: clean, and "
        "its change under each fit (negative: worse). The cost of a defence is its change against no defence's.",
        table(accuracy_table(result, "ndcg")),
        head("Clean users' test RMSE per defence"),
        "RMSE on the test ratings: clean, and its change under each fit (positive: worse).",
        table(accuracy_table(result, "rmse")),
        *([head("Users removed by the detectors"),
           "Real users removed are a cost of the defence (their ratings are gone from training); trimmed ALS removes "
           "no user: its column counts the rows its last sweep dropped.",
           table(removal_table(result))] if cfg.defences else []),
        *([head(f"Optimised attacks no detector trained on (at {_pct(size)} of the users)"),
           "Crafted white box against ExplicitMF with the run's seed (poison.fake_profiles), on the defence "
           "targets and filler; the supervised detectors trained on every hand-crafted type of the run.",
           table(unseen_table(result))] if cfg.unseen_attacks and detector_defences(result) else []),
        head("Seconds"),
        table(timing_table(result)),
        head("Acceptance"),
        table([{"check": c.name, "holds": c.verdict(), "measured": c.detail, "target": c.target}
               for c in (acceptance(result) if checks is None else checks)]),
    ]
    return "\n\n".join(parts)


def render_markdown(result: DetectResult) -> str:
    return render_text(result, markdown=True)


# ----------------------------------------------------------------------------- figures

def figures(result: DetectResult, out: Path) -> List[Path]:
    """ROC curves per held-out attack type (one line per detector, the first seed's test log at
    the table size and filler), and the targets' HR@50 against attack size per attack type (one
    line per fit, mean ± std over seeds, the clean model dashed)."""
    out, files = Path(out), []
    cfg = result.config
    size, filler = table_size(cfg), table_filler(cfg)
    first = result.seeds[0]
    for attack in cfg.attacks:
        series = {}
        for det in cfg.detectors:
            c = first.detection[det].cell(attack, size, filler)
            if c.roc_fpr:
                series[f"{DETECTOR_LABELS[det]} (AUC {c.auc:.3f})"] = (c.roc_fpr, c.roc_tpr)
        if series:
            files.append(curves(out / f"roc_{attack}.png", series,
                                title=f"held-out {attack} at {_pct(size)}, filler {_pct(filler)} (seed {first.seed})",
                                xlabel="false positive rate", ylabel="true positive rate"))
    x = [100 * s for s in sizes(result)]
    several = len(result.seeds) > 1
    clean = float(clean_values(result, "hr50").mean())
    for attack in cfg.attacks:
        series = {}
        for fit in fits(result):
            per_seed = np.column_stack([fit_values(result, attack, s, fit, "hr50") for s in sizes(result)])
            mean, std = mean_std(per_seed)
            series[defence_label(result, fit)] = (x, mean, std if several else None)
        files.append(curves(out / f"hr50_{attack}.png", series, hlines={"clean model": clean},
                            title=f"{attack} attack: targets' HR@50 against attack size",
                            xlabel="fake users (% of real users)", ylabel="target HR@50"))
    return files


# ----------------------------------------------------------------------------- files

FILES = ReportFiles("detect", "Detection and defences", DetectResult, acceptance, render_text, figures, Check.to_row)
report_payload = FILES.payload
report_json = FILES.json
report_markdown = FILES.markdown
write_report = FILES.write
result_from_json = FILES.result_from_json
checks_from_json = FILES.checks_from_json


__all__: Sequence[str] = ("acceptance", "defence_label", "fits", "detector_defences", "sizes", "fillers",
                          "detection_values", "clean_values", "fit_values", "detection_table", "grid_table",
                          "defence_table", "accuracy_table", "removal_table", "unseen_table", "timing_table",
                          "render_text", "render_markdown", "figures", "report_payload", "report_json",
                          "report_markdown", "write_report", "result_from_json", "checks_from_json")
