"""The AMR report: per-seed records of ``amr.run_amr`` aggregated over seeds (mean ± sample
standard deviation) into the paper's Tables 2-3, Figures 3 and 5, the eps sweep, the cold-item
split and the issue's acceptance checks; as terminal text, Markdown, JSON and PNG figures."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..report import curves, format_table, histograms
from ..report.aggregate import fmt_mean_std, mean_std
from .amr import MODELS, PERTURBATIONS, ROBUST_MODELS, AccuracyTable, AMRResult, AMRSeed
from .report_files import ReportFiles
from .records import Check

#: Figure 5's summary: what share of test cases a perturbation moves down, leaves, moves up.
RANK_SUMMARY = ("mean", "median", "worse", "unchanged", "better")


def _stack(result: AMRResult, get: Callable[[AMRSeed], Any]) -> np.ndarray:
    return np.asarray([get(s) for s in result.seeds], dtype=np.float64)


def _cell(values: np.ndarray, digits: int = 4) -> str:
    mean, std = mean_std(values)
    return fmt_mean_std(float(mean), float(std), digits)


def relative_drop(result: AMRResult, model: str, kind: str, metric: str = "nDCG@10") -> np.ndarray:
    """[seeds, eps] relative drop (clean - perturbed) / clean of ``model`` under ``kind``."""
    clean = _stack(result, lambda s: s.robustness.models[model].clean[metric])
    perturbed = _stack(result, lambda s: s.robustness.models[model].perturbed[kind][metric])
    return (clean[:, None] - perturbed) / clean[:, None]


def _table(seed: AMRSeed, part: str) -> Optional[AccuracyTable]:
    """A seed's Table 2 (``part="table2"``) or the cold-item split's (``"cold"``; None when not run)."""
    return seed.table2 if part == "table2" else (seed.cold.table if seed.cold is not None else None)


def _models(result: AMRResult, part: str = "table2") -> List[str]:
    """The models of ``MODELS`` every seed evaluated (VBPR and AMR only without baselines)."""
    tables = [t for t in (_table(s, part) for s in result.seeds) if t is not None]
    return [m for m in MODELS if all(m in t.metrics for t in tables)]


def _eps_index(result: AMRResult, eps: float) -> int:
    return [float(e) for e in result.seeds[0].robustness.eps].index(float(eps))


# ----------------------------------------------------------------------------- acceptance

def acceptance(result: AMRResult) -> List[Check]:
    """The issue's checks on the means over seeds (``passed`` is None when it needs a std over
    one seed)."""
    cfg, checks = result.config, []
    # (check, the drop that must be smaller, the drop that must be larger)
    pairs = (("VBPR: random drop < adversarial drop", ("VBPR", "random"), ("VBPR", "adversarial")),
             ("AMR's adversarial drop < VBPR's", ("AMR", "adversarial"), ("VBPR", "adversarial")))
    for what, small, large in pairs:
        for eps in cfg.robust_eps:
            j = _eps_index(result, eps)
            lo, hi = (float(relative_drop(result, *side)[:, j].mean()) for side in (small, large))
            checks.append(Check(f"{what} at eps {eps}", lo < hi, f"{100 * lo:.1f}% vs {100 * hi:.1f}%",
                                f"{' '.join(small)} < {' '.join(large)}"))
    for metric in ("HR@10", "nDCG@10"):
        vbpr_mean, vbpr_std = mean_std(_stack(result, lambda s: s.table2.metrics["VBPR"][metric]))
        amr = float(np.mean(_stack(result, lambda s: s.table2.metrics["AMR"][metric])))
        bound = float(vbpr_mean) - (0.0 if math.isnan(float(vbpr_std)) else float(vbpr_std))
        checks.append(Check(f"AMR clean {metric} >= VBPR - 1 std", amr >= bound if len(result.seeds) > 1 else None,
                            f"{amr:.4f} vs {float(vbpr_mean):.4f} - {float(vbpr_std):.4f}", f">= {bound:.4f}"))
    for metric in ("HR@10", "nDCG@10") if "DUIF" in _models(result) else ():
        vbpr = float(np.mean(_stack(result, lambda s: s.table2.metrics["VBPR"][metric])))
        duif = float(np.mean(_stack(result, lambda s: s.table2.metrics["DUIF"][metric])))
        checks.append(Check(f"VBPR beats DUIF on {metric}", vbpr > duif, f"{vbpr:.4f} vs {duif:.4f}", "VBPR > DUIF"))
    return checks


# ----------------------------------------------------------------------------- tables

def table2(result: AMRResult, part: str = "table2") -> List[Dict[str, object]]:
    """Mean ± std of every model's HR/nDCG at each k, and the largest p over seeds of AMR's paired
    t-test against it on nDCG@10 (AMR's row: its own)."""
    ks, rows = result.config.k, []
    for model in _models(result, part):
        row: Dict[str, object] = {"model": model}
        for k in ks:
            for m in ("HR", "nDCG"):
                row[f"{m}@{k}"] = _cell(_stack(result, lambda s: _table(s, part).metrics[model][f"{m}@{k}"]))
        if model != "AMR":
            p = _stack(result, lambda s: _table(s, part).ttest[model]["nDCG@10"]["p"])
            row["p (AMR vs, nDCG@10)"] = f"{float(np.nanmax(p)):.1e}" if not np.isnan(p).all() else "nan"
        rows.append(row)
    return rows


def table3(result: AMRResult) -> List[Dict[str, object]]:
    """Relative nDCG@10 drop of VBPR and AMR at each eps of Table 3, adversarial and random."""
    rows = []
    for model in ROBUST_MODELS:
        for kind in PERTURBATIONS:
            drops = relative_drop(result, model, kind)
            row: Dict[str, object] = {"model": model, "perturbation": kind}
            for eps in result.config.robust_eps:
                row[f"eps {eps}"] = _cell(100 * drops[:, _eps_index(result, eps)], 1) + "%"
            rows.append(row)
    return rows


def sweep_table(result: AMRResult) -> List[Dict[str, object]]:
    """nDCG@10 relative drop (%) over every eps measured."""
    eps_all = result.seeds[0].robustness.eps
    rows = []
    for j, eps in enumerate(eps_all):
        row: Dict[str, object] = {"eps": eps}
        for model in ROBUST_MODELS:
            for kind in PERTURBATIONS:
                row[f"{model} {kind[:3]}"] = f"{100 * float(relative_drop(result, model, kind)[:, j].mean()):.1f}%"
        rows.append(row)
    return rows


def rank_changes(result: AMRResult, model: str, kind: str) -> np.ndarray:
    """Every seed's per-case rank change at ``rank_eps`` (positive: the test item fell)."""
    return np.concatenate([np.asarray(s.robustness.models[model].rank_change[kind], dtype=np.float64)
                           for s in result.seeds])


def rank_table(result: AMRResult) -> List[Dict[str, object]]:
    """Figure 5 in numbers: mean and median rank change, shares of cases worse / unchanged / better."""
    rows = []
    for model in ROBUST_MODELS:
        for kind in PERTURBATIONS:
            v = rank_changes(result, model, kind)
            rows.append({"model": model, "perturbation": kind, "mean": f"{v.mean():.2f}",
                         "median": f"{np.median(v):.1f}", "worse": f"{100 * np.mean(v > 0):.1f}%",
                         "unchanged": f"{100 * np.mean(v == 0):.1f}%", "better": f"{100 * np.mean(v < 0):.1f}%"})
    return rows


def cold_table(result: AMRResult) -> List[Dict[str, object]]:
    """The cold-item split: HR@10 / nDCG@10 on cold and on warm test cases."""
    if not all(s.cold is not None for s in result.seeds):
        return []
    rows = []
    for model in _models(result, "cold"):
        row: Dict[str, object] = {"model": model}
        for case in ("cold", "warm"):
            for m in ("HR@10", "nDCG@10"):
                row[f"{case} {m}"] = _cell(_stack(result, lambda s: s.cold.table.by_case[model][case][m]))
        rows.append(row)
    return rows


def training_table(result: AMRResult) -> List[Dict[str, object]]:
    rows = []
    for model in _models(result):
        if model == "Pop":
            continue
        rows.append({"model": model,
                     "epochs": _cell(_stack(result, lambda s: np.nan if s.training[model].epochs is None
                                            else s.training[model].epochs), 0),
                     "seconds": _cell(_stack(result, lambda s: s.training[model].seconds), 1)})
    return rows


def render_text(result: AMRResult, markdown: bool = False, checks: Optional[Sequence[Check]] = None) -> str:
    """Every table of the report, as terminal text or Markdown (``checks``: the acceptance to show,
    by default computed from the records)."""
    cfg = result.config
    n = len(result.seeds)
    head = (lambda t: f"## {t}") if markdown else (lambda t: f"{t}\n{'-' * len(t)}")
    split = result.seeds[0].split
    parts = [
        f"Data: {result.data}; features: {result.features}.",
        f"Random leave-one-out per seed ({split['train']} train / {split['valid']} valid / {split['test']} test "
        f"in seed {result.seeds[0].seed}), the test item ranked against {cfg.n_negatives} sampled "
        f"non-interacted items. Mean ± std over {n} seed(s) {list(cfg.seeds)}; AMR eps {cfg.amr_eps}, "
        f"lambda {cfg.amr_lam}; run took {result.seconds / 60:.1f} min.",
        head("Table 2: accuracy (sampled protocol)"),
        format_table(table2(result), markdown=markdown),
        head("Table 3: relative nDCG@10 drop under feature perturbations (rows of L2 norm eps)"),
        format_table(table3(result), markdown=markdown),
        head("eps sweep: relative nDCG@10 drop (mean over seeds)"),
        format_table(sweep_table(result), markdown=markdown),
        head(f"Figure 5: rank change of the test item at eps {cfg.rank_eps} (all seeds' cases)"),
        format_table(rank_table(result), markdown=markdown),
    ]
    cold = cold_table(result)
    if cold:
        s = result.seeds[0].cold.split
        parts += [head(f"Cold-item split (share {cfg.cold_share}): cold vs warm test cases"),
                  f"Seed {result.seeds[0].seed}: {s['cold_items']} cold items, {s['cold_test_cases']} of "
                  f"{s['test']} test cases cold, {s['dropped']} interactions of cold items held out of training.",
                  format_table(cold, markdown=markdown)]
    if all(s.curves is not None for s in result.seeds):
        parts += [head("Figure 3: trained on from the same VBPR checkpoint (test nDCG@10)"),
                  format_table(curve_table(result), markdown=markdown)]
    parts += [head("Training"), format_table(training_table(result), markdown=markdown),
              head("Acceptance"),
              format_table([{**c.to_row(), "holds": c.verdict("n/a (1 seed)")}
                            for c in (acceptance(result) if checks is None else checks)], markdown=markdown)]
    return "\n\n".join(parts)


def curve_table(result: AMRResult) -> List[Dict[str, object]]:
    """Figure 3 in numbers: test nDCG@10 at the start, the best over the run, and at the end."""
    rows = []
    for model in ROBUST_MODELS:
        values = _stack(result, lambda s: s.curves.models[model]["nDCG@10"])
        rows.append({"trained on as": model, "start": _cell(values[:, 0]), "best": _cell(values.max(axis=1)),
                     "end": _cell(values[:, -1])})
    return rows


# ----------------------------------------------------------------------------- figures

def figures(result: AMRResult, out: Path) -> List[Path]:
    """Figure 3 (curves), Figure 5 (rank-change histograms), the eps sweep and Table 2's bars."""
    cfg, files, several = result.config, [], len(result.seeds) > 1
    eps_all = result.seeds[0].robustness.eps
    series = {}
    for model in ROBUST_MODELS:
        for kind in PERTURBATIONS:
            mean, std = mean_std(100 * relative_drop(result, model, kind))
            series[f"{model} {kind}"] = (eps_all, mean, std if several else None)
    files.append(curves(out / "sweep_ndcg_drop.png", series, logx=True,
                        title="Relative nDCG@10 drop under feature perturbations", xlabel="eps (row L2 norm)",
                        ylabel="nDCG@10 drop (%)"))
    files.append(histograms(out / "fig5_rank_change.png",
                            {f"{m} {k}": rank_changes(result, m, k) for m in ROBUST_MODELS for k in PERTURBATIONS},
                            bins=np.arange(-50.5, 151.5, 5.0), xlabel="rank after - rank before (clipped to -50..150)",
                            title=f"Figure 5: rank change of the test item at eps {cfg.rank_eps}"))
    if all(s.curves is not None for s in result.seeds):
        epochs = result.seeds[0].curves.epoch
        for metric in ("nDCG@10", "HR@10"):
            series = {}
            for model in ROBUST_MODELS:
                mean, std = mean_std(_stack(result, lambda s: s.curves.models[model][metric]))
                series[f"{model} (trained on)"] = (epochs, mean, std if several else None)
            hl = {"MF (BPR)": float(np.mean(_stack(result, lambda s: s.table2.metrics["MF"][metric])))} \
                if "MF" in _models(result) else {}
            files.append(curves(out / f"fig3_{metric.replace('@', '')}.png", series, hlines=hl,
                                title=f"Figure 3: {metric} from the same VBPR checkpoint",
                                xlabel="epochs after the checkpoint", ylabel=f"test {metric}"))
    return files


FILES = ReportFiles("amr", "AMR", AMRResult, acceptance, render_text, figures, Check.to_row)
report_payload = FILES.payload
report_json = FILES.json
report_markdown = FILES.markdown
write_report = FILES.write
result_from_json = FILES.result_from_json
checks_from_json = FILES.checks_from_json


__all__: Sequence[str] = ("acceptance", "table2", "table3", "sweep_table", "rank_table", "cold_table",
                          "curve_table", "render_text", "figures", "report_payload", "report_json",
                          "report_markdown", "result_from_json", "checks_from_json", "write_report")
