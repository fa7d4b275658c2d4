"""Make the tests exercise the installed package when the source tree has no compiled core.

``python -m pytest`` puts the repository root first on ``sys.path``, so ``import advrec`` would
find the source folder, which has no ``_core`` after a plain ``pip install .``. A developer who
built the core in place (``advrec/_core*.so``) keeps testing the source tree.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if not any((ROOT / "advrec").glob("_core*")):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
