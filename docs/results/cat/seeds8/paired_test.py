"""Issue 22, part 2: does CAT's cascade re-scaling (adv_cas) differ from uniform re-scaling
(adv_global) on ML-100K, over enough seeds for a paired test?

Both methods continue from the same base SASRec of each seed (the full CAT regime: 200 base
epochs with early stopping, 40 adversarial epochs, eps 0.3, lam1 0.1, lam2 1.0), so each seed
gives one pair. Reads the reports of
``advrec run advrec/experiments/configs/cat.yaml "seeds=[...]" "models=[SASRec]"
"methods=[adv_global,adv_cas]" control=false "component_models=[]" "sweep_eps=[]"``
given on the command line (any number, each with any seeds; a seed may appear only once) and
writes paired_test.json / paired_test.md beside this file. Run:
``python docs/results/cat/seeds8/paired_test.py REPORT.json [REPORT.json ...]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from advrec.metrics import paired_ttest, wilcoxon

MEASURES = (("test nDCG@10", ("test", "nDCG@10")), ("test HR@10", ("test", "HR@10")),
            ("nDCG@10 drop under substitution of the last 3 items",
             ("substitution", "last_3", "drop", "nDCG@10")))


def _get(record: dict, path: tuple) -> float:
    for key in path:
        record = record[key]
    return float(record)


def main(paths: list[str]) -> dict:
    per_seed: dict[int, dict] = {}
    sources = []
    for p in paths:
        report = json.loads(Path(p).read_text())
        sources.append({"seeds": [rec["seed"] for rec in report["seeds"]],
                        "commit": report.get("provenance", {}).get("commit")})
        for rec in report["seeds"]:
            if rec["seed"] in per_seed:
                raise ValueError(f"seed {rec['seed']} appears in more than one report")
            per_seed[rec["seed"]] = rec["models"]["SASRec"]["methods"]
    seeds = sorted(per_seed)
    rows = []
    for name, path in MEASURES:
        cas = np.array([_get(per_seed[s]["adv_cas"], path) for s in seeds])
        glo = np.array([_get(per_seed[s]["adv_global"], path) for s in seeds])
        t, p_t = paired_ttest(cas, glo)
        w, p_w = wilcoxon(cas, glo)
        rows.append({"measure": name, "adv_cas": cas.tolist(), "adv_global": glo.tolist(),
                     "mean_adv_cas": float(cas.mean()), "mean_adv_global": float(glo.mean()),
                     "mean_difference": float((cas - glo).mean()),
                     "sd_difference": float((cas - glo).std(ddof=1)),
                     "adv_cas_higher_in": int((cas > glo).sum()), "t": float(t), "p_t": float(p_t),
                     "p_wilcoxon": float(p_w)})
    out = {"seeds": seeds, "reports": sources, "rows": rows}
    here = Path(__file__).parent
    (here / "paired_test.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# adv_cas vs adv_global, SASRec on ML-100K, {len(seeds)} seeds (paired by seed)", "",
             "| measure | adv_cas mean | adv_global mean | mean difference (sd) | adv_cas higher | paired t p | Wilcoxon p |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['measure']} | {r['mean_adv_cas']:.4f} | {r['mean_adv_global']:.4f} | "
                     f"{r['mean_difference']:+.4f} ({r['sd_difference']:.4f}) | {r['adv_cas_higher_in']} of {len(seeds)} | "
                     f"{r['p_t']:.3f} | {r['p_wilcoxon']:.3f} |")
    lines += ["", "Per seed (" + ", ".join(map(str, seeds)) + "):", ""]
    for r in rows:
        lines.append(f"- {r['measure']}: adv_cas " + ", ".join(f"{v:.4f}" for v in r["adv_cas"])
                     + "; adv_global " + ", ".join(f"{v:.4f}" for v in r["adv_global"]))
    (here / "paired_test.md").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
