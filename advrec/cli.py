"""The ``advrec`` command: ``demo`` (baselines, a quick attack, a quick AMR and a quick CAT run),
``attack`` (MSAP: FGSM/BIM/PGD against BPR-MF and AMF), ``run amr`` (VBPR/AMR with feature
perturbations), ``run cat`` (SASRec/GRU4Rec with cascade-guided adversarial training),
``certify`` (FM certification), ``info`` (the build)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

if TYPE_CHECKING:  # the command imports its experiments lazily, so `advrec --help` stays fast
    from .models import MF


def _cmd_info(args: argparse.Namespace) -> int:
    from . import kernels
    from ._version import __version__

    print(f"advrec {__version__}")
    for key, value in kernels.info().items():
        print(f"  {key}: {value}")
    print(f"  cuda usable now: {kernels.has_cuda()}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .experiments.baseline import METRIC_COLUMNS, BaselineConfig, run_baseline
    from .report import format_table

    config = BaselineConfig(epochs=args.epochs, seed=args.seed, sampled_negatives=args.sampled or None,
                            progress=None if not args.no_progress else False)
    start = time.perf_counter()
    result = run_baseline(config)
    print(f"\nadvrec demo: {config.dataset}, implicit feedback, leave-one-out by time, full ranking "
          f"(train/valid items masked); data from {result.data_source}")
    table_rows = [r.to_dict() for r in result.rows]
    print(format_table(table_rows, ["model", *METRIC_COLUMNS, "train_s"]))
    print(f"\nBPR-MF best epoch {result.best_epoch + 1}, trained in {result.train_seconds:.1f} s; "
          f"whole demo {time.perf_counter() - start:.1f} s")
    attack_rows = [] if args.no_attack else _demo_attack(args, result.model)
    amr_rows = [] if args.no_amr else _demo_amr(args)
    cat_rows = [] if args.no_cat else _demo_cat(args)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "demo.json").write_text(json.dumps({**result.to_dict(), "attack": attack_rows, "amr": amr_rows,
                                                   "cat": cat_rows}, indent=2))
        md = format_table(table_rows, ["model", *METRIC_COLUMNS, "train_s"], markdown=True) + "\n"
        for rows in (attack_rows, amr_rows, cat_rows):
            if rows:
                md += "\n" + format_table(rows, markdown=True) + "\n"
        (out / "demo.md").write_text(md)
        print(f"results written to {out / 'demo.json'} and {out / 'demo.md'}")
    return 0


def _demo_attack(args: argparse.Namespace, model: "MF") -> List[Dict[str, object]]:
    """The quick MSAP run on the BPR-MF the demo just trained: AMF, then FGSM/BIM/PGD and random noise."""
    from .experiments.msap import CONDITIONS, MODELS, MSAPConfig, run_msap
    from .report import format_table

    config = MSAPConfig.quick(seeds=(args.seed,), sweep_eps=(), progress=None if not args.no_progress else False)
    start = time.perf_counter()
    record = run_msap(config, pretrained={args.seed: model}).seeds[0]
    rows = []
    for name in MODELS:
        for cond in CONDITIONS:
            m = record.models[name].conditions[cond].metrics
            label = f"{cond}-{config.steps}" if cond in ("BIM", "PGD") else cond
            rows.append({"model": name, "perturbation": label, "HR@10": m["HR"], "nDCG@10": m["nDCG"],
                         "ICov@10": int(m["ICov"])})
    print(f"\nUnder attack (MSAP, eps {config.eps} per embedding row, L2; BIM/PGD {config.steps} iterations; "
          f"AMF = BPR-MF + {record.training['AMF'].epochs} epochs of adversarial training):")
    print(format_table(rows))
    print(f"attack demo {time.perf_counter() - start:.1f} s; `advrec attack` runs the full experiment")
    return rows


def _demo_amr(args: argparse.Namespace) -> List[Dict[str, object]]:
    """The quick AMR run: VBPR and AMR on the ML-100K text features, clean and under feature
    perturbations (skipped, with the reason, when the ``content`` extra is not installed)."""
    from .data.content import content_extra_available
    from .experiments.amr import AMRConfig, run_amr
    from .experiments.amr_report import table3
    from .report import format_table

    if not content_extra_available():
        print('\nAMR demo skipped: the text features need the content extra (pip install "advrec[content]")')
        return []
    quick = AMRConfig.quick()
    config = AMRConfig.quick(seeds=(args.seed,), baselines=False, curve_epochs=0, sweep_eps=(),
                             epochs=min(quick.epochs, args.epochs), amr_epochs=min(quick.amr_epochs, args.epochs),
                             progress=None if not args.no_progress else False)
    start = time.perf_counter()
    result = run_amr(config)
    record = result.seeds[0]
    rows: List[Dict[str, object]] = [
        {"model": name, **{m: record.table2.metrics[name][m] for m in ("HR@10", "nDCG@10")}}
        for name in ("VBPR", "AMR")]
    print(f"\nVBPR and AMR on ML-100K with text features ({result.features}); random leave-one-out, "
          f"test item against {config.n_negatives} sampled negatives; AMR = VBPR + "
          f"{record.training['AMR'].epochs} epochs of adversarial training (eps {config.amr_eps}):")
    print(format_table(rows))
    print("Relative nDCG@10 drop when every item's features move by eps (L2 per row):")
    drops = table3(result)
    print(format_table(drops))
    print(f"AMR demo {time.perf_counter() - start:.1f} s; `advrec run amr` runs the full experiment")
    return rows + drops


def _demo_cat(args: argparse.Namespace) -> List[Dict[str, object]]:
    """The quick CAT run: SASRec trained plainly, then on with cascade-guided adversarial training,
    clean and with the last history item replaced adversarially (seed ``--seed``)."""
    from .experiments.cat import CATConfig, run_cat
    from .report import format_table

    # 40 + 4 epochs instead of --quick's 60 + 6 keep this part near 90 s on 2 cores (SASRec at T = 50,
    # one thread: ~1.3 s per base epoch, ~4 s per adv_cas epoch, ~7 s for the substitutions)
    config = CATConfig.quick(seeds=(args.seed,), models=("SASRec",), methods=("adv_cas",), last_k=(1,),
                             epochs=min(40, args.epochs), adv_epochs=min(4, args.epochs),
                             progress=None if not args.no_progress else False)
    start = time.perf_counter()
    result = run_cat(config)
    methods = result.seeds[0].models["SASRec"].methods
    rows: List[Dict[str, object]] = []
    for name in ("base", "adv_cas"):
        rec, last = methods[name], methods[name].substitution["last"].drop
        rows.append({"model": "SASRec", "training": name, "NDCG@10": rec.test["nDCG@10"],
                     "HT@10": rec.test["HR@10"], "NDCG@10 drop, last item replaced": last["nDCG@10"],
                     "HT@10 drop, last item replaced": last["HR@10"]})
    print(f"\nSASRec on ML-100K, leave-one-out by time, full ranking (T = {config.max_len}), base trained "
          f"{methods['base'].epochs} epochs; adv_cas = the base trained on for {methods['adv_cas'].epochs} epochs "
          f"of cascade-guided adversarial training (eps {config.eps:g}, best validation epoch kept). Drop: relative, "
          "when the last history item is replaced by a similar item chosen adversarially:")
    print(format_table(rows))
    print(f"CAT demo {time.perf_counter() - start:.1f} s; `advrec run cat` runs the full experiment")
    return rows


#: flags of ``advrec run`` that only one experiment reads (``None`` when not given)
_RUN_ONLY = {"amr": ("amr_eps", "amr_lam", "cold_share", "features"),
             "cat": ("models", "eps", "lam1", "lam2", "adv_epochs", "max_len", "epochs")}


def _cat_config(args: argparse.Namespace):
    from .experiments.cat import CATConfig

    overrides = dict(progress=None if not args.no_progress else False, data_path=args.data,
                     data_format=args.format)
    for name in ("eps", "lam1", "lam2", "adv_epochs", "max_len", "epochs"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    for name in ("seeds", "models"):
        if getattr(args, name) is not None:
            overrides[name] = tuple(getattr(args, name))
    config = CATConfig.quick(**overrides) if args.quick else CATConfig(**overrides)
    config.validate()
    return config


def _run_config(args: argparse.Namespace):
    from .experiments.amr import AMRConfig

    overrides = dict(progress=None if not args.no_progress else False, data_path=args.data,
                     data_format=args.format, features_path=args.features)
    for name in ("amr_eps", "amr_lam", "cold_share"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    config = AMRConfig.quick(**overrides) if args.quick else AMRConfig(**overrides)
    config.validate()
    return config


def _experiment(args: argparse.Namespace, label: str, what: str, make_config, run, report) -> int:
    """Validate the config (exit 2 with the reason), run, print the report, write it with --out."""
    try:
        config = make_config(args)
    except ValueError as err:
        print(f"advrec {label}: error: {err}", file=sys.stderr)
        return 2
    result = run(config)
    print(f"\nadvrec {label}: {what} on {result.data}")
    print(report.render_text(result))
    if args.out:
        files = report.write_report(result, Path(args.out))
        print("report written: " + ", ".join(str(f) for f in files))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    for other, names in _RUN_ONLY.items():
        given = [n for n in names if other != args.experiment and getattr(args, n) is not None]
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            print(f"advrec run {args.experiment}: error: {flags} only apply to `advrec run {other}`", file=sys.stderr)
            return 2
    if args.experiment == "cat":
        from .experiments import cat_report
        from .experiments.cat import run_cat

        return _experiment(args, "run cat", "SASRec/GRU4Rec with cascade-guided adversarial training", _cat_config,
                           run_cat, cat_report)
    from .experiments import amr_report
    from .experiments.amr import run_amr

    return _experiment(args, f"run {args.experiment}", "VBPR and AMR", _run_config, run_amr, amr_report)


def _attack_config(args: argparse.Namespace):
    from .experiments.msap import MSAPConfig

    overrides = dict(progress=None if not args.no_progress else False, norm=args.norm, eps=args.eps,
                     data_path=args.data, data_format=args.format)
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    if args.steps is not None:
        overrides["steps"] = args.steps
    config = MSAPConfig.quick(**overrides) if args.quick else MSAPConfig(**overrides)
    config.validate()
    return config


def _cmd_attack(args: argparse.Namespace) -> int:
    from .experiments import msap_report
    from .experiments.msap import run_msap

    return _experiment(args, "attack", "MSAP", _attack_config, run_msap, msap_report)


def _cmd_certify(args: argparse.Namespace) -> int:
    from .experiments.fm_certify import FMCertifyConfig, run_fm_certify
    from .experiments.fm_certify_report import render_text, write_report

    config = FMCertifyConfig(seed=args.seed, epochs=args.epochs, rt_epochs=args.rt_epochs,
                             node_budget=args.node_budget, progress=None if not args.no_progress else False)
    if args.quick:
        config.rt_qs, config.eval_qs, config.attack_qs = (2,), (1, 2, 3, 4), (1, 2)
        config.exact_models = ("FM",)
    start = time.perf_counter()
    result, _ = run_fm_certify(config)
    print(f"\nadvrec certify: {result.data}")
    print(render_text(result))
    print(f"\nwhole run {time.perf_counter() - start:.1f} s")
    if args.out:
        files = write_report(result, Path(args.out))
        print("report written: " + ", ".join(str(f) for f in files))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advrec", description="Attack, defend, certify and measure recommenders.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train and evaluate the baselines on ML-100K and print a results table")
    demo.add_argument("--epochs", type=int, default=300, help="maximum epochs (early stopping decides; default 300)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--sampled", type=int, default=0, metavar="N",
                      help="also evaluate with the sampled protocol, N negatives per test item")
    demo.add_argument("--out", type=str, default=None, help="directory for demo.json / demo.md")
    demo.add_argument("--no-attack", action="store_true", help="skip the quick attack run (AMF, FGSM/BIM/PGD)")
    demo.add_argument("--no-amr", action="store_true", help="skip the quick VBPR/AMR run (needs the content extra)")
    demo.add_argument("--no-cat", action="store_true",
                      help="skip the quick SASRec / cascade-guided adversarial training run")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_cmd_demo)
    cert = sub.add_parser("certify", help="train FM, RFM-1 and FM-RT on ML-100K and certify their robustness "
                                          "to injected interactions (Liu et al., SIGIR 2020)")
    cert.add_argument("--epochs", type=int, default=100, help="maximum FM/RFM epochs (early stopping decides)")
    cert.add_argument("--rt-epochs", type=int, default=5, help="FM-RT epochs after the FM converged")
    cert.add_argument("--node-budget", type=int, default=20_000, help="branch-and-bound nodes per instance (exact)")
    cert.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cert.add_argument("--quick", action="store_true", help="one FM-RT budget (q=2), q=1..4, exact on FM only")
    cert.add_argument("--out", type=str, default=None, help="directory for the JSON/Markdown report and PNG figures")
    cert.add_argument("--no-progress", action="store_true", help="hide progress bars")
    cert.set_defaults(func=_cmd_certify)
    att = sub.add_parser("attack", help="MSAP on ML-100K: FGSM, BIM and PGD (and random noise) against BPR-MF "
                                        "and AMF, with accuracy, beyond-accuracy and fairness (Anelli et al.)")
    att.add_argument("--quick", action="store_true",
                     help="one seed, short AMF training, 25 iterations, 5-point eps sweep (a few minutes)")
    att.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                     help="seeds to average over (default 0 1 2; --quick: 0)")
    att.add_argument("--eps", type=float, default=0.5, help="perturbation budget per embedding row (default 0.5)")
    att.add_argument("--norm", choices=("l2", "linf", "l2-step-linf-clip"), default="l2",
                     help="l2 (default): L2-normalised steps in the L2 ball; linf: sign steps in the box; "
                          "l2-step-linf-clip: the published MSAP code (L2 steps, element-wise clip)")
    att.add_argument("--steps", type=int, default=None,
                     help="BIM/PGD iterations for Figure 1 and Tables 1-3 (default 150; --quick: 25)")
    att.add_argument("--data", type=str, default=None, metavar="PATH",
                     help="use your own data instead of ML-100K (ML-1M ratings.dat, Last.fm user_artists.dat, ...)")
    att.add_argument("--format", type=str, default=None, help="format of --data (default: guessed from the name)")
    att.add_argument("--out", type=str, default=None, help="directory for msap.json, msap.md and the PNG figures")
    att.add_argument("--no-progress", action="store_true", help="hide progress bars")
    att.set_defaults(func=_cmd_attack)
    run = sub.add_parser("run", help="run a paper's experiment: amr = VBPR and AMR with item content features "
                                     "(Tang et al., TKDE 2020) on ML-100K text features or your data; cat = "
                                     "SASRec and GRU4Rec with cascade-guided adversarial training and its "
                                     "baselines, under item substitution (Tan et al.) on ML-100K or your data")
    run.add_argument("experiment", choices=("amr", "cat"), help="which experiment")
    run.add_argument("--quick", action="store_true",
                     help="one seed and short phases (a few minutes); amr: short AMR training and curves, no "
                          "cold-item split; cat: SASRec, adv_cas only, no ablations")
    run.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                     help="seeds to average over (default 0 1 2; --quick: 0)")
    run.add_argument("--models", type=str, nargs="+", default=None, metavar="M",
                     help="cat: SASRec and/or GRU4Rec (default both; --quick: SASRec)")
    run.add_argument("--eps", type=float, default=None,
                     help="cat: the adversarial perturbation size eps (default 0.3; the paper's 10 is too large here)")
    run.add_argument("--lam1", type=float, default=None,
                     help="cat: weight of the sequence-level adversarial loss (default 0.1; the paper: 1)")
    run.add_argument("--lam2", type=float, default=None,
                     help="cat: weight of the embedding-level adversarial loss (default 1, as the paper)")
    run.add_argument("--epochs", type=int, default=None,
                     help="cat: maximum base-phase epochs, early stopping decides (default 200; --quick: 60)")
    run.add_argument("--adv-epochs", type=int, default=None,
                     help="cat: epochs of each adversarial phase (default 40; --quick: 6)")
    run.add_argument("--max-len", type=int, default=None, help="cat: sequence length T (default 50)")
    run.add_argument("--amr-eps", type=float, default=None, help="AMR's training perturbation size (row L2 norm)")
    run.add_argument("--amr-lam", type=float, default=None, help="AMR's adversarial regulariser weight lambda")
    run.add_argument("--cold-share", type=float, default=None,
                     help="share of test cases drawn cold in the cold-item split (0 skips it; default 0.05)")
    run.add_argument("--data", type=str, default=None, metavar="PATH",
                     help="your interactions instead of ML-100K (amr: needs --features; cat: needs timestamps)")
    run.add_argument("--format", type=str, default=None, help="format of --data (default: guessed from the name)")
    run.add_argument("--features", type=str, default=None, metavar="PATH",
                     help="item features (.npy in item order, or .npz keyed by item id), e.g. CNN image features")
    run.add_argument("--out", type=str, default=None,
                     help="directory for amr.json / cat.json, the Markdown report and the PNG figures")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(func=_cmd_run)
    info = sub.add_parser("info", help="how the compiled core was built (compiler, OpenMP, CUDA)")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("epochs", "rt_epochs", "node_budget"):
        value = getattr(args, flag, None)   # None: not a flag of this command, or not given
        if value is not None and value < 1:
            print(f"advrec: error: --{flag.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
