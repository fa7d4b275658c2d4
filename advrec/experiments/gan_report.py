"""The GAN report: ``gan.run_gan``'s records as the tutorial's table (ours next to the paper's),
the acceptance checks, the attacks on the GAN-trained models, and the training curves of both
players; as terminal text, Markdown, JSON and PNG figures."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..report import format_table, line_chart
from ..report.aggregate import fmt_mean_std
from .gan import GANResult, PAPER, PAPER_COLUMNS
from .records import Check
from .report_files import ReportFiles

ROWS = ("ItemPop", "BPR-MF", "IRGAN (pre-trained G)", "IRGAN", "CFGAN")


def accuracy_rows(result: GANResult) -> List[Dict[str, object]]:
    """Per model: mean ± std over the seeds of each column, then the paper's row."""
    rows: List[Dict[str, object]] = []
    for model in ROWS:
        if not all(model in s.metrics for s in result.seeds):
            continue
        row: Dict[str, object] = {"model": model}
        for col in PAPER_COLUMNS:
            row[col] = fmt_mean_std(*result.mean(model, col), 3)
        rows.append(row)
        if model in PAPER:
            rows.append({"model": f"  {model}, paper", **{c: f"{v:.3f}" for c, v in zip(PAPER_COLUMNS, PAPER[model])}})
    return rows


def acceptance(result: GANResult) -> List[Check]:
    """CFGAN >= 90% of the table's P@5 and nDCG@5, and above our BPR-MF (seed means)."""
    checks = []
    for col, paper in (("Precision@5", PAPER["CFGAN"][0]), ("nDCG@5", PAPER["CFGAN"][4])):
        mean = result.mean("CFGAN", col)[0]
        checks.append(Check(f"CFGAN {col} >= 90% of the paper's", mean >= 0.9 * paper,
                            f"{mean:.3f} = {mean / paper:.0%} of {paper:.3f}", f">= {0.9 * paper:.3f}"))
    for col in ("Precision@5", "nDCG@5"):
        c, b = result.mean("CFGAN", col)[0], result.mean("BPR-MF", col)[0]
        checks.append(Check(f"CFGAN {col} above our BPR-MF", c > b, f"CFGAN {c:.3f}, BPR-MF {b:.3f}", "CFGAN > BPR-MF"))
    return checks


def attack_rows(result: GANResult) -> List[Dict[str, object]]:
    """Per model, attack and budget: clean and attacked P@5 / nDCG@20 and the relative drops,
    mean ± std over the seeds."""
    keys = []
    for s in result.seeds:
        for a in s.attacks:
            k = (a["model"], a["attack"], a["rho"])
            if k not in keys:
                keys.append(k)
    rows = []
    for model, attack, rho in keys:
        picked = [a for s in result.seeds for a in s.attacks if (a["model"], a["attack"], a["rho"]) == (model, attack, rho)]
        clean = [s.metrics[model]["nDCG@20"] for s in result.seeds]
        row: Dict[str, object] = {"model": model, "attack": attack, "rho": rho,
                                  "eps": float(np.mean([a["eps"] for a in picked])),
                                  "clean nDCG@20": fmt_mean_std(float(np.mean(clean)), _std(clean), 3)}
        for key in ("nDCG@20", "nDCG@20 drop", "Precision@5 drop"):
            v = [a[key] for a in picked]
            row[key] = fmt_mean_std(float(np.mean(v)), _std(v), 3)
        rows.append(row)
    return rows


def _std(v: Sequence[float]) -> float:
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def training_rows(result: GANResult) -> List[Dict[str, object]]:
    rows = []
    for s in result.seeds:
        for model, rec in s.training.items():
            if model != "ItemPop":
                rows.append({"seed": s.seed, "model": model, **{k: v for k, v in rec.items()}})
    return rows


def render_text(result: GANResult, markdown: bool = False, checks: Optional[Sequence[Check]] = None) -> str:
    checks = acceptance(result) if checks is None else checks
    n = len(result.seeds)
    out = [f"Accuracy on the test purchases (CFGAN's protocol), mean ± std over {n} seed{'s' * (n > 1)}; "
           "the paper's row under each",
           format_table(accuracy_rows(result), ("model",) + PAPER_COLUMNS, markdown=markdown), "",
           "Acceptance",
           format_table([c.to_row() for c in checks], ("check", "measured", "target", "holds"), markdown=markdown), "",
           "Embedding attacks on the refitted models (budget eps = rho x the mean row norm of the perturbed tables)",
           format_table(attack_rows(result), markdown=markdown, digits=3), "",
           "Training (epochs chosen on validation, seconds of the refit on the whole training split)",
           format_table(training_rows(result), markdown=markdown, digits=3)]
    return "\n".join(out)


def figures(result: GANResult, out: Path) -> List[Path]:
    """Per GAN: validation metric and both players' losses over the outer epochs (seed 0's run
    on the validation split), and the pre-training curve of IRGAN's generator."""
    out, files = Path(out), []
    s = result.seeds[0]
    for model in ("IRGAN", "CFGAN"):
        c = s.curves.get(model)
        if not c:
            continue
        x = list(range(1, len(c["g_loss"]) + 1))
        files.append(line_chart(out / f"{model.lower()}_losses.png", x,
                                {"generator": c["g_loss"], "discriminator": c["d_loss"]},
                                title=f"{model}: both players' losses (seed {s.seed})", xlabel="outer epoch",
                                ylabel="mean loss"))
        valid = [(i, v) for i, v in zip(x, c["valid"]) if v == v]
        if valid:
            files.append(line_chart(out / f"{model.lower()}_validation.png", [i for i, _ in valid],
                                    {result.config.valid_metric: [v for _, v in valid]},
                                    title=f"{model}: validation (seed {s.seed})", xlabel="outer epoch",
                                    ylabel=result.config.valid_metric))
    return files


FILES: ReportFiles[GANResult] = ReportFiles("gan", "GAN-based recommenders (CFGAN's protocol)", GANResult,
                                            acceptance, render_text, figures)
report_json = FILES.json
report_markdown = FILES.markdown
write_report = FILES.write
result_from_json = FILES.result_from_json

__all__ = ["accuracy_rows", "attack_rows", "acceptance", "render_text", "figures", "write_report", "report_json",
           "report_markdown", "result_from_json", "FILES"]
