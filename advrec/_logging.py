"""The library's one logger: messages a user must see (data sources, rows removed by filters)."""
from __future__ import annotations

import logging
import sys

logger = logging.getLogger("advrec")
if not logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("advrec: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def report(message: str) -> None:
    """Tell the user something they should know (never silently drop or substitute data)."""
    logger.info(message)
