"""The ``advrec`` command: ``demo`` (baselines, a quick attack, a quick AMR, a quick CAT and a quick
poisoning run),
``attack`` (MSAP: FGSM/BIM/PGD against BPR-MF and AMF), ``run amr`` (VBPR/AMR with feature
perturbations), ``run cat`` (SASRec/GRU4Rec with cascade-guided adversarial training), ``run poison``
(shilling attacks against retrained UserKNN and ExplicitMF),
``run detect`` (fake-profile detectors under leave-one-attack-type-out, and detector + retrain / trimmed
ALS against the poisoning attacks), ``certify`` (FM certification), ``certify-batch`` (FM certificates of
a Parquet file of instances on a Ray cluster), ``info`` (the build).

Every argument is checked before any work (the configs' own ``validate()`` included): a bad one
ends the command with one line on stderr naming it and exit status 2. No flag may be abbreviated."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence

from ._logging import show_reports
from .data.datasets import FORMATS, guess_format

if TYPE_CHECKING:  # the command imports its experiments lazily, so `advrec --help` stays fast
    from .models import MF

# ----------------------------------------------------------------------------- argument checks
#
# Every argument is checked before any work starts (no data loaded, nothing trained): a bad one
# ends the command with one line on stderr naming it and exit status 2, never a traceback after
# the run. ``main`` runs the command's check, which builds the experiment's config and calls its
# own ``validate()``; the command then runs on that config.

#: seeds go to numpy's legacy generator (``np.random.seed``: below 2**32, and the experiments add
#: one for a second phase) and to torch: a non-negative int32 is valid everywhere
SEED_MAX = 2**31 - 1
#: counts (epochs, iterations, nodes) reach int64 code (numpy, the C++ bindings)
COUNT_MAX = 2**63 - 1
#: the tables are float32: a larger magnitude becomes inf
FLOAT32_MAX = 3.4028234663852886e38
#: ``demo --sampled``: the demo runs on ML-100K (1,682 items); the sampled cases are drawn in
#: tiles of [1024, 1 + N] ids, so N is bounded to keep them small (more than the catalogue = all items)
SAMPLED_MAX = 10_000
#: the formats of ``advrec.data.load_file`` (--format)
DATA_FORMATS = FORMATS


class ArgumentRefused(Exception):
    """A bad command-line argument; the message names it (``--flag ...``)."""


class _Parser(argparse.ArgumentParser):
    """No abbreviations (``--q`` is not ``--quick``), and argparse's own errors (a non-number,
    an unknown choice, an unknown flag) in one line on stderr, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_count(value: Optional[int], flag: str, minimum: Optional[int] = 1, maximum: int = COUNT_MAX) -> None:
    """``minimum`` None: the config's ``validate()`` checks the lower bound."""
    if value is None:
        return
    if minimum is not None and value < minimum:
        raise ArgumentRefused(f"{flag} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ArgumentRefused(f"{flag} must be at most {maximum}, got {value}")


def _check_seeds(seeds: Optional[Sequence[int]], flag: str) -> None:
    if seeds is None:
        return
    for s in seeds:
        if not 0 <= s <= SEED_MAX:
            raise ArgumentRefused(f"{flag}: a seed must be an int in [0, {SEED_MAX}], got {s}")
    if len(set(seeds)) != len(seeds):
        raise ArgumentRefused(f"{flag}: seeds must be distinct, got {' '.join(map(str, seeds))}")


def _check_float(value: Optional[float], flag: str) -> None:
    """The magnitude bound; NaN, inf and the sign are the config's ``validate()``'s to refuse."""
    if value is not None and math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise ArgumentRefused(f"{flag} must be at most {FLOAT32_MAX:.4g} in magnitude (float32), got {value:g}")


def _validated(make: Callable[[], Any], flags: Mapping[str, str]):
    """``make()``'s config after its ``validate()``; a ValueError becomes ArgumentRefused, led by
    the flag of the config field it names (``flags``: field -> flag)."""
    try:
        config = make()
        config.validate()
    except ValueError as err:
        msg = str(err)
        field = msg.split(" ", 1)[0].split(":", 1)[0]
        raise ArgumentRefused(f"{flags[field]}: {msg}" if field in flags else msg) from None
    return config


def _check_data(args: argparse.Namespace) -> None:
    """--data: an existing, readable file or directory whose format is given or can be told from
    its name; --format only with --data."""
    if args.data is None:
        if args.format is not None:
            raise ArgumentRefused("--format applies to --data (the format of your file); give --data PATH too")
        return
    p = Path(args.data)
    if not args.data:
        raise ArgumentRefused("--data: the path is empty")
    if not p.exists():
        raise ArgumentRefused(f"--data: {p}: no such file or directory")
    if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
        raise ArgumentRefused(f"--data: {p}: not readable")
    if args.format is None:
        try:
            guess_format(p)
        except ValueError:
            what = "directory" if p.is_dir() else "file"
            raise ArgumentRefused(f"--data: cannot tell the format of {what} {p.name}; pass --format "
                                  f"(one of {', '.join(DATA_FORMATS)})") from None


def _check_features(path: Optional[str]) -> None:
    if path is None:
        return
    p = Path(path)
    if not path or not p.is_file():
        raise ArgumentRefused(f"--features: {p}: no such file" if path else "--features: the path is empty")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise ArgumentRefused(f"--features: {p}: expected a .npy or .npz file")
    if not os.access(p, os.R_OK):
        raise ArgumentRefused(f"--features: {p}: not readable")


def _check_out(path: Optional[str], names: Sequence[str] = ()) -> None:
    """--out: a writable directory, or a path one can be created at (its nearest existing
    ancestor a writable directory); ``names``, the files the command writes there, must not be
    directories."""
    if path is None:
        return
    if not path:
        raise ArgumentRefused("--out: the path is empty")
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise ArgumentRefused(f"--out: {out} exists and is not a directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ArgumentRefused(f"--out: directory {out} is not writable")
        for name in names:
            if (out / name).is_dir():
                raise ArgumentRefused(f"--out: {out / name} is a directory; the command writes a file there")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ArgumentRefused(f"--out: cannot create directory {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArgumentRefused(f"--out: cannot create directory {out}: {parent} is not writable")


def _progress(args: argparse.Namespace) -> Optional[bool]:
    return None if not args.no_progress else False


def _cmd_info(args: argparse.Namespace) -> int:
    from . import kernels
    from ._version import __version__

    print(f"advrec {__version__}")
    for key, value in kernels.info().items():
        print(f"  {key}: {value}")
    print(f"  cuda usable now: {kernels.has_cuda()}")
    return 0


def _check_demo(args: argparse.Namespace) -> Dict[str, Any]:
    """The baseline's config and those of the quick parts the demo runs (None: skipped)."""
    from .experiments.amr import AMRConfig
    from .experiments.baseline import BaselineConfig
    from .experiments.cat import CATConfig
    from .experiments.msap import MSAPConfig
    from .experiments.poison import PoisonConfig

    _check_count(args.epochs, "--epochs")
    _check_seeds([args.seed], "--seed")
    _check_count(args.sampled, "--sampled", minimum=0, maximum=SAMPLED_MAX)
    flags = {"seeds": "--seed", "epochs": "--epochs", "amr_epochs": "--epochs", "adv_epochs": "--epochs"}
    quick_amr = AMRConfig.quick()
    configs: Dict[str, Any] = {
        "baseline": BaselineConfig(epochs=args.epochs, seed=args.seed, sampled_negatives=args.sampled or None,
                                   progress=_progress(args)),
        "attack": None if args.no_attack else _validated(lambda: MSAPConfig.quick(
            seeds=(args.seed,), sweep_eps=(), progress=_progress(args)), flags),
        "amr": None if args.no_amr else _validated(lambda: AMRConfig.quick(
            seeds=(args.seed,), baselines=False, curve_epochs=0, sweep_eps=(),
            epochs=min(quick_amr.epochs, args.epochs), amr_epochs=min(quick_amr.amr_epochs, args.epochs),
            progress=_progress(args)), flags),
        # 40 + 4 epochs instead of --quick's 60 + 6 keep this part near 90 s on 2 cores (SASRec at T = 50,
        # one thread: ~1.3 s per base epoch, ~4 s per adv_cas epoch, ~7 s for the substitutions)
        "cat": None if args.no_cat else _validated(lambda: CATConfig.quick(
            seeds=(args.seed,), models=("SASRec",), methods=("adv_cas",), last_k=(1,), epochs=min(40, args.epochs),
            adv_epochs=min(4, args.epochs), progress=_progress(args)), flags),
        # issue 16's quick version: one victim, two attacks, one size (a few seconds)
        "poison": None if args.no_poison else _validated(lambda: PoisonConfig.quick(
            seeds=(args.seed,), n_targets=3, target_pools=("unpopular",), attacks=("random", "average"),
            sizes=(0.05,), victims=("ExplicitMF",), progress=_progress(args)), flags),
    }
    _check_out(args.out, ("demo.json", "demo.md"))
    return configs


def _cmd_demo(args: argparse.Namespace) -> int:
    from .experiments.baseline import METRIC_COLUMNS, run_baseline
    from .report import format_table

    configs = args.config
    config = configs["baseline"]
    start = time.perf_counter()
    result = run_baseline(config)
    print(f"\nadvrec demo: {config.dataset}, implicit feedback, leave-one-out by time, full ranking "
          f"(train/valid items masked); data from {result.data_source}")
    table_rows = [r.to_dict() for r in result.rows]
    print(format_table(table_rows, ["model", *METRIC_COLUMNS, "train_s"]))
    print(f"\nBPR-MF best epoch {result.best_epoch + 1}, trained in {result.train_seconds:.1f} s; "
          f"baselines {time.perf_counter() - start:.1f} s")
    attack_rows = [] if configs["attack"] is None else _demo_attack(configs["attack"], result.model)
    amr_rows = [] if configs["amr"] is None else _demo_amr(configs["amr"])
    cat_rows = [] if configs["cat"] is None else _demo_cat(configs["cat"])
    poison_rows = [] if configs["poison"] is None else _demo_poison(configs["poison"])
    print(f"\nwhole demo {time.perf_counter() - start:.1f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "demo.json").write_text(json.dumps({**result.to_dict(), "attack": attack_rows, "amr": amr_rows,
                                                   "cat": cat_rows, "poison": poison_rows}, indent=2))
        md = format_table(table_rows, ["model", *METRIC_COLUMNS, "train_s"], markdown=True) + "\n"
        for rows in (attack_rows, amr_rows, cat_rows, poison_rows):
            if rows:
                md += "\n" + format_table(rows, markdown=True) + "\n"
        (out / "demo.md").write_text(md)
        print(f"results written to {out / 'demo.json'} and {out / 'demo.md'}")
    return 0


def _demo_attack(config, model: "MF") -> List[Dict[str, object]]:
    """The quick MSAP run on the BPR-MF the demo just trained: AMF, then FGSM/BIM/PGD and random noise."""
    from .experiments.msap import CONDITIONS, MODELS, run_msap
    from .report import format_table

    start = time.perf_counter()
    seed = config.seeds[0]
    record = run_msap(config, pretrained={seed: model}).seeds[0]
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


def _demo_amr(config) -> List[Dict[str, object]]:
    """The quick AMR run: VBPR and AMR on the ML-100K text features, clean and under feature
    perturbations (skipped, with the reason, when the ``content`` extra is not installed)."""
    from .data.content import content_extra_available
    from .experiments.amr import run_amr
    from .experiments.amr_report import table3
    from .report import format_table

    if not content_extra_available():
        print('\nAMR demo skipped: the text features need the content extra (pip install "advrec[content]")')
        return []
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


def _demo_cat(config) -> List[Dict[str, object]]:
    """The quick CAT run: SASRec trained plainly, then on with cascade-guided adversarial training,
    clean and with the last history item replaced adversarially (seed ``--seed``)."""
    from .experiments.cat import run_cat
    from .report import format_table

    start = time.perf_counter()
    result = run_cat(config)
    methods = result.seeds[0].models["SASRec"].methods
    rows: List[Dict[str, object]] = []
    for name in ("base", "adv_cas"):
        rec, last = methods[name], methods[name].substitution["last"].drop
        rows.append({"model": "SASRec", "training": name, "nDCG@10": rec.test["nDCG@10"],
                     "HR@10": rec.test["HR@10"], "nDCG@10 drop %, last item replaced": round(100 * last["nDCG@10"], 1),
                     "HR@10 drop %, last item replaced": round(100 * last["HR@10"], 1)})
    print(f"\nSASRec on ML-100K, leave-one-out by time, full ranking (T = {config.max_len}), base trained "
          f"{methods['base'].epochs} epochs; adv_cas = the base trained on for {methods['adv_cas'].epochs} epochs "
          f"of cascade-guided adversarial training (eps {config.eps:g}, best validation epoch kept). Drop: relative, "
          "when the last history item is replaced by a similar item chosen adversarially:")
    print(format_table([{k: f"{v:.1f}%" if "drop %" in k else v for k, v in r.items()} for r in rows]))
    print(f"CAT demo {time.perf_counter() - start:.1f} s; `advrec run cat` runs the full experiment")
    return rows


def _demo_poison(config) -> List[Dict[str, object]]:
    """The quick poisoning run: ExplicitMF fitted on ML-100K's ratings, then refitted from scratch
    with random and with average fake profiles pushing 3 unpopular targets (seed ``--seed``)."""
    from .experiments.poison import run_poison
    from .experiments.poison_report import cell_values, clean_values
    from .report import format_table

    start = time.perf_counter()
    result = run_poison(config)
    seed = result.seeds[0]
    pool, victim, size = config.target_pools[0], config.victims[0], config.sizes[0]
    before = float(clean_values(result, pool, victim, "HR@50")[0])   # means over the targets, one seed
    rows: List[Dict[str, object]] = []
    for attack in config.attacks:
        after, shift, seconds = (float(cell_values(result, pool, victim, attack, size, m)[0])
                                 for m in ("HR@50", "shift", "seconds"))
        rows.append({"victim": victim, "attack": attack, "fake users": seed.pools[pool].victims[victim].cell(
            attack, size).n_fake, "target HR@50 before": before, "target HR@50 after": after, "pred. shift": shift,
            "refit s": round(seconds, 2)})
    targets = ", ".join(str(t) for t in seed.pools[pool].target_ids)
    print(f"\nPoisoning ML-100K's ratings (random 80/20 split): {victim} refitted from scratch with "
          f"{100 * size:g}% fake users ({seed.filler} filler items each) pushing {config.n_targets} targets from "
          f"the least rated fifth of the items (raw ids {targets}); over the real users who have not rated them:")
    print(format_table([{**r, "target HR@50 before → after": f"{r['target HR@50 before']:.4f} → "
                         f"{r['target HR@50 after']:.4f}", "pred. shift": f"{r['pred. shift']:+.3f}", "refit s": f"{r['refit s']:.2f}"}
                        for r in rows], ["victim", "attack", "fake users", "target HR@50 before → after",
                                         "pred. shift", "refit s"]))
    print(f"poisoning demo {time.perf_counter() - start:.1f} s; `advrec run poison` runs the full experiment")
    return rows


#: flags of ``advrec run`` that only one experiment reads (``None`` when not given)
_RUN_ONLY = {"amr": ("amr_eps", "amr_lam", "cold_share", "features"),
             "cat": ("models", "eps", "lam1", "lam2", "adv_epochs", "max_len", "epochs"),
             "poison": ("attacks", "sizes", "victims", "n_targets", "target_pools"),
             "detect": ("sizes", "fillers", "detectors", "unseen_attacks"),
             "gan": ("workers", "irgan_sampler")}
#: config field -> the flag that sets it, for the config's own ``validate()`` messages
_RUN_FLAGS = {"seeds": "--seeds", "models": "--models", "eps": "--eps", "lam1": "--lam1", "lam2": "--lam2",
              "epochs": "--epochs", "adv_epochs": "--adv-epochs", "max_len": "--max-len", "last_k": "--max-len",
              "amr_eps": "--amr-eps", "amr_lam": "--amr-lam", "cold_share": "--cold-share", "data_path": "--data",
              "data_format": "--format", "features_path": "--features", "attacks": "--attacks", "sizes": "--sizes",
              "victims": "--victims", "n_targets": "--n-targets", "target_pools": "--target-pools",
              "fillers": "--fillers", "detectors": "--detectors", "unseen_attacks": "--unseen-attacks",
              "workers": "--workers", "irgan_sampler": "--irgan-sampler"}
_ATTACK_FLAGS = {"seeds": "--seeds", "eps": "--eps", "steps": "--steps", "accept_steps": "--steps",
                 "norm": "--norm", "data_path": "--data", "data_format": "--format"}


RUN_EXPERIMENTS = ("amr", "cat", "poison", "detect", "gan")


def _is_experiment_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def _check_file_run(args: argparse.Namespace):
    """``advrec run FILE.yaml key=value ...``: the file's settings, the overrides, --out and
    --no-progress; the per-experiment flags are refused (a file run sets fields as key=value)."""
    from .experiments import files

    given = [n for names in _RUN_ONLY.values() for n in names if getattr(args, n, None) is not None]
    given += [n for n in ("seeds", "data", "format", "epochs") if getattr(args, n, None) is not None]
    if args.quick:
        given.append("quick")
    if given:
        name = _flag(given[0])
        raise ArgumentRefused(f"{name} does not apply to an experiment file: set the field as key=value "
                              "(e.g. seeds=[0]), or run the -quick file for the quick settings")
    overrides = list(args.overrides)
    try:
        spec = files.resolve(args.experiment, overrides)
        if args.no_progress and "progress" in {f.name for f in dataclasses.fields(spec.config)}:
            spec = files.resolve(args.experiment, overrides + ["progress=false"])
    except ValueError as err:
        raise ArgumentRefused(str(err)) from None
    stem = files.KINDS[spec.experiment].module
    if spec.grid:
        if args.out is None:
            raise ArgumentRefused("a grid needs --out DIR: its cells are kept there, so a re-run resumes")
        _check_out(args.out, ("grid.json", "grid.md"))
    else:
        _check_out(args.out, (f"{stem}.json", f"{stem}.md"))
    return spec


def _check_run(args: argparse.Namespace):
    """The flags of the other experiments, the counts, seeds and float bounds, the config's own
    ``validate()``, then the files (--data, --features, --out)."""
    if _is_experiment_file(args.experiment):
        return _check_file_run(args)
    if args.experiment not in RUN_EXPERIMENTS:
        raise ArgumentRefused(f"EXPERIMENT must be one of {', '.join(RUN_EXPERIMENTS)} or an experiment file "
                              f"(.yaml), got {args.experiment!r}")
    if args.overrides:
        raise ArgumentRefused(f"key=value overrides ({args.overrides[0]}) apply to experiment files: "
                              f"advrec run advrec/experiments/configs/{args.experiment}.yaml {args.overrides[0]}")
    refused: Dict[tuple, List[str]] = {}   # the experiments a flag applies to -> the flags given
    for name in dict.fromkeys(n for names in _RUN_ONLY.values() for n in names):
        if name in _RUN_ONLY.get(args.experiment, ()) or getattr(args, name) is None:
            continue
        owners = tuple(e for e, names in _RUN_ONLY.items() if name in names)
        refused.setdefault(owners, []).append(name)
    if refused:
        owners, given = next(iter(refused.items()))
        raise ArgumentRefused(f"{', '.join(_flag(n) for n in given)} only appl{'y' if len(given) > 1 else 'ies'} "
                              f"to {' or '.join(f'`advrec run {o}`' for o in owners)}")
    _check_count(args.epochs, "--epochs")
    for name in ("adv_epochs", "max_len"):
        _check_count(getattr(args, name), _flag(name), minimum=None)
    _check_seeds(args.seeds, "--seeds")
    for name in ("eps", "lam1", "lam2", "amr_eps", "amr_lam", "cold_share"):
        _check_float(getattr(args, name), _flag(name))
    _check_count(args.n_targets, "--n-targets", minimum=None)
    make = {"amr": _amr_config, "cat": _cat_config, "poison": _poison_config,
            "detect": _detect_config, "gan": _gan_config}[args.experiment]
    config = _validated(lambda: make(args), _RUN_FLAGS)
    _check_data(args)
    if args.experiment == "amr":
        _check_features(args.features)
        if args.features is None:
            from .data.content import content_extra_available

            if not content_extra_available():
                raise ArgumentRefused('the ML-100K text features need the content extra (pip install '
                                      '"advrec[content]"); or pass your item features with --features')
    _check_out(args.out, (f"{args.experiment}.json", f"{args.experiment}.md"))
    return config


def _cat_config(args: argparse.Namespace):
    from .experiments.cat import CATConfig

    if args.models is not None and len(set(args.models)) != len(args.models):
        raise ArgumentRefused(f"--models: each model once, got {' '.join(args.models)}")
    overrides: Dict[str, Any] = dict(progress=_progress(args), data_path=args.data, data_format=args.format)
    for name in ("eps", "lam1", "lam2", "adv_epochs", "max_len", "epochs"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    for name in ("seeds", "models"):
        if getattr(args, name) is not None:
            overrides[name] = tuple(getattr(args, name))
    make = CATConfig.quick if args.quick else CATConfig
    if args.max_len is not None:
        # the substitutions replace the last K of T items: keep the K that fit a shorter T
        overrides["last_k"] = tuple(k for k in make().last_k if k <= args.max_len) or (1,)
    return make(**overrides)


def _amr_config(args: argparse.Namespace):
    from .experiments.amr import AMRConfig

    overrides: Dict[str, Any] = dict(progress=_progress(args), data_path=args.data, data_format=args.format,
                                     features_path=args.features)
    for name in ("amr_eps", "amr_lam", "cold_share"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    return AMRConfig.quick(**overrides) if args.quick else AMRConfig(**overrides)


def _poison_config(args: argparse.Namespace):
    from .experiments.poison import PoisonConfig

    overrides: Dict[str, Any] = dict(progress=_progress(args), data_path=args.data, data_format=args.format)
    for name in ("seeds", "sizes"):
        if getattr(args, name) is not None:
            overrides[name] = tuple(getattr(args, name))
    for name in ("attacks", "victims", "target_pools"):   # space- or comma-separated: random,average pga
        if getattr(args, name) is not None:
            overrides[name] = tuple(n for entry in getattr(args, name) for n in entry.split(",") if n)
    if args.n_targets is not None:
        overrides["n_targets"] = args.n_targets
    return PoisonConfig.quick(**overrides) if args.quick else PoisonConfig(**overrides)


def _detect_config(args: argparse.Namespace):
    from .experiments.detect import DetectConfig

    overrides: Dict[str, Any] = dict(progress=_progress(args), data_path=args.data, data_format=args.format)
    for name in ("seeds", "sizes", "fillers"):
        if getattr(args, name) is not None:
            overrides[name] = tuple(getattr(args, name))
    for name in ("detectors", "unseen_attacks"):   # space- or comma-separated: svm,pca forest
        if getattr(args, name) is not None:
            overrides[name] = tuple(n for entry in getattr(args, name) for n in entry.split(",") if n)
    return DetectConfig.quick(**overrides) if args.quick else DetectConfig(**overrides)


def _gan_config(args: argparse.Namespace):
    from .experiments.gan import GANConfig

    if args.data is not None:
        raise ArgumentRefused("--data does not apply to `advrec run gan` (CFGAN's protocol on ML-100K)")
    overrides: Dict[str, Any] = dict(progress=_progress(args))
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    if args.workers is not None:
        _check_count(args.workers, "--workers")
        overrides["workers"] = args.workers
    if args.irgan_sampler is not None:
        overrides["irgan_sampler"] = args.irgan_sampler
    return GANConfig.quick(**overrides) if args.quick else GANConfig(**overrides)


def _input_error_flag(args: argparse.Namespace, err: ValueError) -> Optional[str]:
    """The flag whose file an error of the run is about, or None."""
    msg = str(err)
    for flag, field, path in (("--data", "data_path", args.data), ("--features", "features_path",
                                                                    getattr(args, "features", None))):
        if path is not None and (msg.startswith(field + ":") or msg.startswith(str(Path(path)) + ":")):
            return flag
    return None


def _experiment(args: argparse.Namespace, what: str, run, report, flags: Optional[Mapping[str, str]] = None) -> int:
    """Run on the checked config, print the report, write it with --out. ``flags``: config field
    -> flag, for settings only the data can refuse (``n_targets: ...``, checked before any fit)."""
    from .data import FormatError

    try:
        result = run(args.config)
    except ValueError as err:
        # what is wrong inside --data / --features shows only when they are read: a FormatError,
        # or a ValueError that names the setting or the file (``data_path: ...``, ``<path>: ...``)
        flag = _input_error_flag(args, err) or (flags or {}).get(str(err).split(":", 1)[0])
        if flag is None and not isinstance(err, FormatError):
            raise
        print(f"{args.prog}: error: {flag or '--data'}: {err}", file=sys.stderr)
        return 2
    print(f"\n{args.prog}: {what} on {result.data}")
    print(report.render_text(result))
    if args.out:
        files = report.write_report(result, Path(args.out))
        print("report written: " + ", ".join(str(f) for f in files))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    if _is_experiment_file(args.experiment):
        from .experiments import files

        spec = args.config
        if spec.grid:
            from .experiments.grid import render, run_grid

            records = run_grid(spec, Path(args.out))
            print(f"\n{args.prog}:")
            print(render(spec, records))
            print(f"grid written: {Path(args.out) / 'grid.json'}, {Path(args.out) / 'grid.md'}")
            return 0
        _, _, report = files.KINDS[spec.experiment].load()
        if spec.track is not None and spec.track_dir is None:    # tracked beside the report
            import dataclasses

            args.config = dataclasses.replace(spec, track_dir=str(spec.tracking_to(args.out)))
        return _experiment(args, f"{spec.experiment} from {args.experiment}", files.run, report)
    if args.experiment == "cat":
        from .experiments import cat_report
        from .experiments.cat import run_cat

        return _experiment(args, "SASRec/GRU4Rec with cascade-guided adversarial training", run_cat, cat_report)
    if args.experiment == "poison":
        from .experiments import poison_report
        from .experiments.poison import run_poison

        return _experiment(args, "shilling attacks against retrained victims", run_poison, poison_report,
                           {k: _RUN_FLAGS[k] for k in ("n_targets", "sizes")})
    if args.experiment == "gan":
        from .experiments import gan_report
        from .experiments.gan import run_gan

        return _experiment(args, "IRGAN and CFGAN against ItemPop and BPR-MF", run_gan, gan_report)
    if args.experiment == "detect":
        from .experiments import detect_report
        from .experiments.detect import run_detect

        return _experiment(args, "fake-profile detection and defences", run_detect, detect_report,
                           {k: _RUN_FLAGS[k] for k in ("sizes", "fillers")})
    from .experiments import amr_report
    from .experiments.amr import run_amr

    return _experiment(args, "VBPR and AMR", run_amr, amr_report)


def _check_attack(args: argparse.Namespace):
    from .experiments.msap import MSAPConfig

    _check_seeds(args.seeds, "--seeds")
    _check_count(args.steps, "--steps")
    _check_float(args.eps, "--eps")
    overrides: Dict[str, Any] = dict(progress=_progress(args), norm=args.norm, eps=args.eps, data_path=args.data,
                                     data_format=args.format)
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    make = MSAPConfig.quick if args.quick else MSAPConfig
    if args.steps is not None:
        overrides["steps"] = args.steps
        # the acceptance check reads BIM/PGD on the Figure 1 curve at accept_steps (25) iterations:
        # with fewer steps it reads the last one
        overrides["accept_steps"] = min(make().accept_steps, args.steps)
    config = _validated(lambda: make(**overrides), _ATTACK_FLAGS)
    _check_data(args)
    _check_out(args.out, ("msap.json", "msap.md"))
    return config


def _cmd_attack(args: argparse.Namespace) -> int:
    from .experiments import msap_report
    from .experiments.msap import run_msap

    return _experiment(args, "MSAP", run_msap, msap_report)


def _check_certify(args: argparse.Namespace):
    from .experiments.fm_certify import FMCertifyConfig

    for name in ("epochs", "rt_epochs", "node_budget"):
        _check_count(getattr(args, name), _flag(name))
    _check_seeds([args.seed], "--seed")
    _check_out(args.out, ("fm_certify.json", "fm_certify.md"))
    make = FMCertifyConfig.quick if args.quick else FMCertifyConfig
    return make(seed=args.seed, epochs=args.epochs, rt_epochs=args.rt_epochs, node_budget=args.node_budget,
                progress=_progress(args))


def _cmd_certify(args: argparse.Namespace) -> int:
    from .experiments.fm_certify import run_fm_certify
    from .experiments.fm_certify_report import render_text, write_report

    start = time.perf_counter()
    result, _ = run_fm_certify(args.config)
    print(f"\nadvrec certify: {result.data}")
    print(render_text(result))
    print(f"\nwhole run {time.perf_counter() - start:.1f} s")
    if args.out:
        files = write_report(result, Path(args.out))
        print("report written: " + ", ".join(str(f) for f in files))
    return 0


def _check_batch(args: argparse.Namespace) -> Dict[str, Any]:
    """certify-batch: every flag checked, the checkpoint loaded (it must be an FM) and the input's
    columns read from its Parquet footer, before Ray starts."""
    try:
        from .distributed import InstanceFile, ModelPayload
        from .distributed.model import check_method, check_qs
    except ImportError as err:  # pragma: no cover - the extra is installed where tests run
        raise ArgumentRefused(str(err)) from None
    from .models import FM
    from .training import load_checkpoint

    for name in ("shard_size", "node_budget", "cpus_per_task"):
        _check_count(getattr(args, name), _flag(name))
    _check_count(args.max_retries, "--max-retries", minimum=0)
    if args.num_cpus is not None:
        _check_count(args.num_cpus, "--num-cpus")
        if args.address != "local":
            raise ArgumentRefused("--num-cpus: only with --address local (a cluster's nodes declare their own)")
    try:
        qs = check_qs(args.q)
        method = check_method(args.method)
    except ValueError as err:
        raise ArgumentRefused(f"--{'method' if 'method' in str(err) else 'q'}: {err}") from None
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ArgumentRefused(f"OUTPUT: {out} exists and is not a directory")
    parent = out.absolute()
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArgumentRefused(f"OUTPUT: {parent} is not writable")
    try:
        model = load_checkpoint(args.model)
    except (OSError, ValueError) as err:
        raise ArgumentRefused(f"--model: {err}") from None
    if not isinstance(model, FM):
        raise ArgumentRefused(f"--model: {args.model} holds a {type(model).__name__}, not an FM")
    try:
        perturbable = _perturbable_ids(args.perturbable)
        payload = ModelPayload.from_model(model, perturbable)
    except (OSError, ValueError, IndexError) as err:
        raise ArgumentRefused(f"--perturbable: {err}") from None
    try:
        InstanceFile(args.input, features_column=args.features_column, id_column=args.id_column,
                     label_column=args.label_column)
    except (OSError, ValueError, TypeError) as err:
        flag = next((f"--{c.replace('_', '-')}" for c in ("features_column", "id_column", "label_column")
                     if str(err).startswith(c)), "INPUT")
        raise ArgumentRefused(f"{flag}: {err}") from None
    return {"payload": payload, "qs": qs, "method": method}


def _perturbable_ids(spec: str):
    """``LO:HI`` (the ids of a field, e.g. ML-100K's history 2674:4356) or a .npy file of ids."""
    import numpy as np

    if ":" in spec:
        lo, _, hi = spec.partition(":")
        try:
            return np.arange(int(lo), int(hi), dtype=np.int64)
        except ValueError:
            raise ValueError(f"expected LO:HI (two ints) or a .npy file, got {spec!r}") from None
    return np.load(spec, allow_pickle=False)


def _cmd_batch(args: argparse.Namespace) -> int:
    from .distributed import certify_parquet, connect

    config = args.config
    connect(args.address, num_cpus=args.num_cpus)
    stats = certify_parquet(args.input, args.output, config["payload"], config["qs"], config["method"],
                            features_column=args.features_column, id_column=args.id_column,
                            label_column=args.label_column, shard_size=args.shard_size,
                            node_budget=args.node_budget, cpus_per_task=args.cpus_per_task,
                            max_retries=args.max_retries, resume=not args.no_resume)
    rate = stats.rows / stats.seconds if stats.seconds > 0 else float("inf")
    print(f"advrec certify-batch: {stats.rows} instances x {len(config['qs'])} budgets in {stats.shards} shards "
          f"({stats.computed} computed, {stats.reused} already done) on {len(stats.nodes)} node(s), "
          f"{stats.seconds:.1f} s ({rate:.0f} instances/s)")
    print(f"results written: {Path(args.output) / 'results.parquet'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="advrec", description="Attack, defend, certify and measure recommenders.")
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
    demo.add_argument("--no-poison", action="store_true",
                      help="skip the quick poisoning run (ExplicitMF, random and average fake profiles at 5%%)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_cmd_demo, check=_check_demo)
    cert = sub.add_parser("certify", help="train FM, RFM-1 and FM-RT on ML-100K and certify their robustness "
                                          "to injected interactions (Liu et al., SIGIR 2020)")
    cert.add_argument("--epochs", type=int, default=100, help="maximum FM/RFM epochs (early stopping decides)")
    cert.add_argument("--rt-epochs", type=int, default=5, help="FM-RT epochs after the FM converged")
    cert.add_argument("--node-budget", type=int, default=20_000, help="branch-and-bound nodes per instance (exact)")
    cert.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cert.add_argument("--quick", action="store_true", help="one FM-RT budget (q=2), q=1..4, exact on FM only")
    cert.add_argument("--out", type=str, default=None, help="directory for the JSON/Markdown report and PNG figures")
    cert.add_argument("--no-progress", action="store_true", help="hide progress bars")
    cert.set_defaults(func=_cmd_certify, check=_check_certify)
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
                     help="BIM/PGD iterations for Figure 1 and Tables 1-3 (default 150; --quick: 25); the "
                          "acceptance check reads iteration 25, or the last one when fewer")
    att.add_argument("--data", type=str, default=None, metavar="PATH",
                     help="use your own data instead of ML-100K (ML-1M ratings.dat, Last.fm user_artists.dat, ...)")
    att.add_argument("--format", choices=DATA_FORMATS, default=None,
                     help="format of --data (default: guessed from the name)")
    att.add_argument("--out", type=str, default=None, help="directory for msap.json, msap.md and the PNG figures")
    att.add_argument("--no-progress", action="store_true", help="hide progress bars")
    att.set_defaults(func=_cmd_attack, check=_check_attack)
    run = sub.add_parser("run", help="run a paper's experiment: amr = VBPR and AMR with item content features "
                                     "(Tang et al., TKDE 2020) on ML-100K text features or your data; cat = "
                                     "SASRec and GRU4Rec with cascade-guided adversarial training and its "
                                     "baselines, under item substitution (Tan et al.) on ML-100K or your data; "
                                     "poison = shilling attacks (random, average, bandwagon, a no-target control) "
                                     "and optimised ones (PGA, SGLD, RevAdv) against UserKNN and ExplicitMF retrained "
                                     "on the poisoned ratings and WRMF, BPR-MF and LightGCN on the same log as "
                                     "implicit feedback; detect = fake-profile detectors (SVM, random forest, "
                                     "DegreeSAD, PCA-SelectUsers) under leave-one-attack-type-out, and detector + "
                                     "retrain and trimmed ALS against the shilling attacks on ExplicitMF; gan = "
                                     "IRGAN and CFGAN against ItemPop and BPR-MF under CFGAN's protocol, and "
                                     "FGSM/PGD on the GAN-trained models")
    run.add_argument("experiment", metavar="EXPERIMENT",
                     help=f"which experiment ({', '.join(RUN_EXPERIMENTS)}), or an experiment file (.yaml: "
                          "advrec/experiments/configs/ has one per experiment; see docs/experiments.md)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="with an experiment file: set a field, e.g. seeds=[0] or cfgan_epochs=100 (YAML values)")
    run.add_argument("--quick", action="store_true",
                     help="one seed and short phases (a few minutes); amr: short AMR training and curves, no "
                          "cold-item split; cat: SASRec, adv_cas only, no ablations; poison: UserKNN, random and "
                          "average at 5%%, 3 targets per pool (seconds); detect: SVM and PCA-SelectUsers, size and "
                          "filler 5%% (under a minute); gan: seed 0, short games (about a minute)")
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
    run.add_argument("--attacks", type=str, nargs="+", default=None, metavar="A",
                     help="poison: random, average, bandwagon, control, pga, sgld and/or revadv, space- or "
                          "comma-separated (default the first four; pga and sgld, optimised white box on ExplicitMF, "
                          "and revadv, on WRMF, cost 20 s to a minute per seed, size and pool; --quick: random "
                          "average)")
    run.add_argument("--sizes", type=float, nargs="+", default=None, metavar="F",
                     help="poison, detect: attack sizes as fractions of the real users (poison default 0.01 0.02 "
                          "0.03 0.05 0.1, detect default 0.01 0.03 0.05 0.1; --quick: 0.05)")
    run.add_argument("--fillers", type=float, nargs="+", default=None, metavar="F",
                     help="detect: filler sizes of the detection grid as fractions of the items (default 0.01 0.03 "
                          "0.05; --quick: 0.05); the defences use the real users' mean profile length")
    run.add_argument("--detectors", type=str, nargs="+", default=None, metavar="D",
                     help="detect: svm, forest, degreesad, degreesad-svm, svm-or-degreesad (the union of the two SVMs' "
                          "suspects) and/or pca, space- or comma-separated (default all six; --quick: svm pca)")
    run.add_argument("--unseen-attacks", type=str, nargs="+", default=None, metavar="A",
                     help="detect: optimised attacks (pga, sgld) scored by the defence detectors, which never trained "
                          "on them (default none: about 20 s each per seed)")
    run.add_argument("--victims", type=str, nargs="+", default=None, metavar="V",
                     help="poison: UserKNN, ExplicitMF, WRMF, BPR-MF and/or LightGCN, space- or comma-separated "
                          "(default all five; --quick: UserKNN)")
    run.add_argument("--n-targets", type=int, default=None,
                     help="poison: target items drawn from each pool (default 5; --quick: 3)")
    run.add_argument("--target-pools", type=str, nargs="+", default=None, metavar="P",
                     help="poison: where the targets are drawn from, reported apart: unpopular (the least rated "
                          "fifth of the rated items) and/or all (every rated item) (default both)")
    run.add_argument("--data", type=str, default=None, metavar="PATH",
                     help="your interactions instead of ML-100K (amr: needs --features; cat: needs timestamps; "
                          "poison, detect: need explicit ratings)")
    run.add_argument("--format", choices=DATA_FORMATS, default=None,
                     help="format of --data (default: guessed from the name)")
    run.add_argument("--features", type=str, default=None, metavar="PATH",
                     help="item features (.npy in item order, or .npz keyed by item id), e.g. CNN image features")
    run.add_argument("--irgan-sampler", choices=("reinforce", "gumbel"), default=None,
                     help="gan: how IRGAN's generator learns from its samples (default reinforce: the paper's policy "
                          "gradient; gumbel: Gumbel-softmax relaxed samples)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="gan: run the seeds in N processes (the same numbers as one after the other; default 1)")
    run.add_argument("--out", type=str, default=None,
                     help="directory for amr.json / cat.json / poison.json / detect.json, the Markdown report and the "
                          "PNG figures")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(func=_cmd_run, check=_check_run)
    again = sub.add_parser("rerun", help="run again the experiment a report records (its <name>.json) and say "
                                         "whether the numbers are the same")
    again.add_argument("report", help="a report's JSON, as --out wrote it (msap.json, gan.json, ...)")
    again.add_argument("--out", type=str, default=None, help="directory for the new report (default: not kept)")
    again.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                       help="re-run only these of the report's seeds and compare their per-seed records (a spot "
                            "check of a long multi-seed report)")
    again.set_defaults(func=_cmd_rerun, check=_check_rerun)
    board = sub.add_parser("report", help="the leaderboard of a grid run (advrec run GRID.yaml --out RUN_DIR): "
                                          "victims x attacks x sizes of a poisoning grid, or models x attacks x "
                                          "budgets of an embedding-attack grid, with the change and its significance")
    board.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a grid run")
    board.add_argument("--metric", default=None, choices=("HR@10", "HR@20", "HR@50", "nDCG"),
                       help="poisoning: the targets' exposure measure (default HR@50); embedding attacks: nDCG "
                            "(the default and only one)")
    board.set_defaults(func=_cmd_report, check=_check_report)
    sets = sub.add_parser("datasets", help="the datasets a config's dataset: key can name: whether advrec "
                                           "downloads each, whether it is here, and where its files go")
    sets.set_defaults(func=_cmd_datasets, check=lambda args: None)
    batch = sub.add_parser("certify-batch", help="certify an FM's predictions on a Parquet file of instances, "
                                                  "shard by shard on a Ray cluster (the distributed extra)")
    batch.add_argument("input", metavar="INPUT", help="Parquet file, one instance per row (a list<int64> column "
                                                      "of active feature ids)")
    batch.add_argument("output", metavar="OUTPUT", help="directory for shards/, manifest.json and results.parquet "
                                                        "(a rerun resumes: finished shards are kept)")
    batch.add_argument("--model", required=True, metavar="CKPT", help="FM checkpoint (advrec.training.save_checkpoint)")
    batch.add_argument("--perturbable", required=True, metavar="LO:HI|IDS.npy",
                       help="the feature ids that may be injected: a range LO:HI or a .npy file of ids")
    batch.add_argument("--q", type=int, nargs="+", required=True, help="budgets: at most q injected features")
    batch.add_argument("--method", default="best", help="paper, joint, best, exact or greedy (default best)")
    batch.add_argument("--address", default="local",
                       help="local (start Ray here), auto (join the cluster running here) or HOST:PORT")
    batch.add_argument("--num-cpus", type=int, default=None, help="with --address local: worker CPUs")
    batch.add_argument("--shard-size", type=int, default=4096, help="instances per shard/task (default 4096)")
    batch.add_argument("--cpus-per-task", type=int, default=1, help="threads (and Ray CPUs) per task (default 1)")
    batch.add_argument("--node-budget", type=int, default=100_000, help="branch-and-bound nodes per instance (exact)")
    batch.add_argument("--max-retries", type=int, default=3, help="re-runs of a task whose worker died (default 3)")
    batch.add_argument("--features-column", default="features", help="the list<int64> column (default features)")
    batch.add_argument("--id-column", default=None, help="a column carried into the results (e.g. an instance id)")
    batch.add_argument("--label-column", default=None, help="an integer label column carried into the results")
    batch.add_argument("--no-resume", action="store_true",
                       help="discard an earlier run's shards in OUTPUT instead of resuming")
    batch.set_defaults(func=_cmd_batch, check=_check_batch)
    info = sub.add_parser("info", help="how the compiled core was built (compiler, OpenMP, CUDA)")
    info.set_defaults(func=_cmd_info, check=lambda args: None)
    for command in (demo, cert, att, run, again, board, sets, batch, info):
        command.add_argument("--log-file", type=str, default=None, metavar="PATH",
                             help="also write advrec's log (data sources, rows removed, warnings) to PATH, "
                                  "appending, one timestamped line per message")
    return parser


def _check_rerun(args: argparse.Namespace):
    from .experiments import files

    path = Path(args.report)
    if not path.is_file():
        raise ArgumentRefused(f"{args.report}: no such report")
    if path.stem not in {k.module for k in files.KINDS.values()}:
        raise ArgumentRefused(f"{args.report}: a report is named after its experiment "
                              f"({', '.join(k.module + '.json' for k in files.KINDS.values())})")
    _check_out(args.out, (path.name,))
    return None


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .experiments import files

    try:
        _, diffs = files.rerun(args.report, args.out, seeds=args.seeds)
    except ValueError as err:
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return 2
    if not diffs:
        part = f" for seeds {args.seeds}" if args.seeds else ""
        print(f"{args.prog}: the same numbers as {args.report}{part} (wall times and provenance aside)")
        return 0
    print(f"{args.prog}: {len(diffs)} value(s) differ from {args.report}:")
    for d in diffs[:20]:
        print("  " + d)
    if len(diffs) > 20:
        print(f"  ... and {len(diffs) - 20} more")
    return 1


def _check_report(args: argparse.Namespace):
    if not (Path(args.run_dir) / "grid.json").is_file():
        raise ArgumentRefused(f"{args.run_dir}: no grid.json (run a grid with --out {args.run_dir} first)")
    return None


def _cmd_report(args: argparse.Namespace) -> int:
    from .experiments import leaderboard

    try:
        board = leaderboard.board_of(args.run_dir)
        metric = args.metric or leaderboard.default_metric(board)
        rows = leaderboard.rows_of(args.run_dir, metric)
    except ValueError as err:
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return 2
    print(leaderboard.render(rows, metric, board=board))
    files = leaderboard.write(args.run_dir, metric)
    print("written: " + ", ".join(str(f) for f in files))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import catalog

    for entry in catalog():
        how = ("downloaded on first use" if entry.fetchable else
               "generated" if not entry.files else "files you place")
        here = ("here" if entry.present() else "not here") if entry.files else "-"
        print(f"{entry.name:10s} {how:24s} {here:9s} {entry.description}")
        if entry.files and not entry.fetchable:
            print(f"{'':10s} put {' or '.join(entry.files)} in {entry.folder()} (from {entry.url})")
    return 0


def _check_log_file(path: Optional[str]) -> None:
    """--log-file: not a directory, in an existing writable directory."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ArgumentRefused(f"--log-file: {path} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ArgumentRefused(f"--log-file: {parent} is not a writable directory")
    if p.exists() and not os.access(p, os.W_OK):
        raise ArgumentRefused(f"--log-file: {path} is not writable")


def _log_to_file(path: str) -> logging.Handler:
    """Append the ``advrec`` logger's messages to ``path`` with a timestamp and level."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("advrec").addHandler(handler)
    return handler


def main(argv: Optional[List[str]] = None) -> int:
    """Parse, check every argument (exit 2 with one line on stderr naming the bad one, before any
    work), then run the command on the checked config."""
    args, extra = build_parser().parse_known_args(argv)
    if args.command == "run":   # key=value overrides given after options (argparse takes them before only)
        overrides = [e for e in extra if "=" in e and not e.startswith("-")]
        args.overrides = list(args.overrides) + overrides
        extra = [e for e in extra if e not in overrides]
    args.prog = f"advrec {args.command}" + (f" {args.experiment}" if args.command == "run" else "")
    if extra:   # named by the subcommand they were given to (argparse names only `advrec`)
        print(f"{args.prog}: error: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        raise SystemExit(2)
    try:
        _check_log_file(args.log_file)
        args.config = args.check(args)
    except ArgumentRefused as err:
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return 2
    show_reports()  # the library only has a NullHandler: the command prints its reports
    handler = _log_to_file(args.log_file) if args.log_file else None
    try:
        return int(args.func(args))
    finally:
        if handler is not None:
            logging.getLogger("advrec").removeHandler(handler)
            handler.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
