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

#: whether tests/ sits in a source checkout. Tests marked ``checkout`` read its committed files
#: (docs/, README.md, csrc/, the advrec/ sources); run from a copy of tests/ alone, against an
#: installed wheel, they are skipped rather than passing over files that are not there. In a
#: checkout they run, and a missing file fails them.
IN_CHECKOUT = (ROOT / "pyproject.toml").is_file()

if not any((ROOT / "advrec").glob("_core*")):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]


def pytest_configure(config):
    # registered here, not in pyproject.toml, so that a copy of tests/ alone knows it too
    config.addinivalue_line("markers", "checkout: reads the source checkout's files (docs/, README.md, "
                                       "csrc/); skipped when tests/ runs outside a checkout")


def pytest_collection_modifyitems(config, items):
    if IN_CHECKOUT:
        return
    skip = pytest.mark.skip(reason=f"reads the source checkout's files; {ROOT} is not a checkout")
    for item in items:
        if item.get_closest_marker("checkout"):
            item.add_marker(skip)


def pytest_report_header(config):
    """Which advrec the run tests (the source tree or an installed wheel), shown atop every run."""
    import advrec

    where = Path(advrec.__file__).resolve().parent
    kind = "source tree" if where.parent == ROOT else "installed"
    return f"advrec {advrec.__version__}: {where} ({kind})"


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
