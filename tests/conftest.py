"""Make the tests exercise the installed package when the source tree has no compiled core.

``python -m pytest`` puts the repository root first on ``sys.path``, so ``import advrec`` would
find the source folder, which has no ``_core`` after a plain ``pip install .``. A developer who
built the core in place (``advrec/_core*.so``) keeps testing the source tree.
"""
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if not any((ROOT / "advrec").glob("_core*")):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]


@pytest.fixture
def reports():
    """Messages the library reported to the user (the ``advrec`` logger does not propagate)."""
    msgs: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            msgs.append(record.getMessage())

    handler = Grab()
    logger = logging.getLogger("advrec")
    level = logger.level
    logger.setLevel(logging.INFO)  # the library sets no level (NullHandler only)
    logger.addHandler(handler)
    yield msgs
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one torch thread is fastest, and immune to a busy machine's contention
    (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
