"""The FM certification report: the records of ``fm_certify.run_fm_certify`` as the paper's
Table 2/3, the robust / non-robust / unknown shares (Figures 4-6) and the injection success
rates (Figure 2); as terminal text, Markdown, JSON and PNG figures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from ..report import format_table, grouped_bars, have_matplotlib, line_chart, stacked_shares
from .fm_certify import FMCertifyResult

TABLE_COLUMNS = ("model", "accuracy", "avg-max q (paper)", "avg-max q (best)")
TITLE = "FM certification on ML-100K"


def shares_table(result: FMCertifyResult, model: str) -> List[Dict[str, object]]:
    """One row per q: robust / non-robust / unknown (%) per method, for one model."""
    rows = []
    for q in result.config.eval_qs:
        row: Dict[str, object] = {"q": q}
        for r in result.shares:
            if r.model == model and r.q == q:
                row[f"{r.method} R"] = 100 * r.robust
                row[f"{r.method} NR"] = 100 * r.non_robust
                row[f"{r.method} ?"] = 100 * r.unknown
        rows.append(row)
    return rows


def render_text(result: FMCertifyResult, markdown: bool = False) -> str:
    """Every table of the report, as terminal text or Markdown."""
    out = ["Accuracy (%) and avg-max q on the test split (Table 2/3)",
           format_table([r.to_dict() for r in result.table], TABLE_COLUMNS, digits=2, markdown=markdown), ""]
    for model in result.models:
        out += [f"{model}: certified robust (R) / non-robust (NR) / unknown (?) instances, % (Figures 4-6)",
                format_table(shares_table(result, model), digits=1, markdown=markdown), ""]
    if result.rfm2_search:
        out += ["RFM-2 (capped l1 loss + capped squared trace norm, fine-tuned from FM): validation accuracy (%) "
                "per (eps1, eps2), the best kept",
                format_table([{**r, "chosen": "yes" if r["chosen"] else ""} for r in result.rfm2_search],
                             ("eps1", "eps2", "valid accuracy", "chosen"), digits=2, markdown=markdown), ""]
    out += ["Injection success rate, % of test instances whose label flips (Figure 2)",
            format_table([{"model": r.model, "q": r.q, "greedy": 100 * r.greedy, "random": 100 * r.random}
                          for r in result.attacks], ("model", "q", "greedy", "random"), digits=2,
                         markdown=markdown)]
    return "\n".join(out)


def report_json(result: FMCertifyResult) -> str:
    """The text of fm_certify.json."""
    return json.dumps(result.to_dict(), indent=2)


def report_markdown(result: FMCertifyResult) -> str:
    """The text of fm_certify.md."""
    run = f"\n\n{result.provenance.line()}" if result.provenance is not None else ""
    return f"# {TITLE}\n\n" + result.data + "\n\n" + render_text(result, markdown=True) + run + "\n"


def result_from_json(payload: Mapping[str, Any]) -> FMCertifyResult:
    """An ``FMCertifyResult`` from a loaded ``fm_certify.json``, to re-render without re-running."""
    if not isinstance(payload, Mapping) or not {"config", "table", "shares"} <= set(payload):
        raise ValueError("payload must be a loaded fm_certify.json: a dict with 'config', 'table' and 'shares'")
    return FMCertifyResult.from_dict(payload)


def figures(result: FMCertifyResult, out: Path) -> List[Path]:
    """Figures 4 and 5 (non-robust / robust share per budget), 6 (stacked shares per model and
    method) and 2 (greedy vs random injection per model)."""
    out, files = Path(out), []
    qs = list(result.config.eval_qs)
    models = result.models

    def share(model: str, method: str, key: str) -> List[float]:
        values = []
        for q in qs:
            r = result.share(model, method, q)
            values.append(float("nan") if r is None else {"robust": r.robust, "non-robust": r.non_robust,
                                                          "unknown": r.unknown}[key])
        return values

    files.append(line_chart(out / "fig4_non_robust.png", qs, {m: share(m, "best", "non-robust") for m in models},
                            title="Certified non-robust (greedy)", xlabel="budget q", ylabel="instances", percent=True))
    files.append(line_chart(out / "fig5_robust.png", qs, {m: share(m, "best", "robust") for m in models},
                            title="Certified robust (best bound)", xlabel="budget q", ylabel="instances", percent=True))
    for model in models:
        for method in result.config.methods:
            r, nr = share(model, method, "robust"), share(model, method, "non-robust")
            if any(np.isnan(r)):
                continue
            files.append(stacked_shares(out / f"fig6_{model}_{method}.png", qs, r, nr,
                                        title=f"{model}: {method}"))
    aq = list(result.config.attack_qs)
    for model in models:
        rows = [a for a in result.attacks if a.model == model]
        files.append(grouped_bars(out / f"fig2_{model}.png", [str(q) for q in aq],
                                  {"greedy": [a.greedy for a in rows], "random": [a.random for a in rows]},
                                  title=f"{model}: injection success", xlabel="injected interactions q",
                                  ylabel="labels flipped"))
    return files


def write_report(result: FMCertifyResult, out: Path) -> List[Path]:
    """fm_certify.json, fm_certify.md and (with matplotlib) PNG figures into ``out``; returns the
    files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "fm_certify.json", out / "fm_certify.md"]
    files[0].write_text(report_json(result))
    files[1].write_text(report_markdown(result))
    if have_matplotlib():
        files += figures(result, out)
    return files


__all__: Sequence[str] = ("TABLE_COLUMNS", "shares_table", "render_text", "report_json", "report_markdown",
                          "result_from_json", "figures", "write_report")
