"""The ``advrec`` command: ``advrec demo`` runs the baseline experiment, ``advrec info`` the build."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional


def _cmd_info(args: argparse.Namespace) -> int:
    from . import __version__, kernels

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
    print(format_table(result.rows, ["model", *METRIC_COLUMNS, "train_s"]))
    print(f"\nBPR-MF best epoch {result.best_epoch + 1}, trained in {result.train_seconds:.1f} s; "
          f"whole demo {time.perf_counter() - start:.1f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "demo.json").write_text(json.dumps(result.to_dict(), indent=2))
        (out / "demo.md").write_text(format_table(result.rows, ["model", *METRIC_COLUMNS, "train_s"], markdown=True) + "\n")
        print(f"results written to {out / 'demo.json'} and {out / 'demo.md'}")
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
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_cmd_demo)
    info = sub.add_parser("info", help="how the compiled core was built (compiler, OpenMP, CUDA)")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "epochs", 1) < 1:
        print("advrec: error: --epochs must be >= 1", file=sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
