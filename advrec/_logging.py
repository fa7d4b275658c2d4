"""The library's one logger: messages a user must see (data sources, rows removed by filters).

As a library should, advrec only attaches a ``NullHandler``: an application routes the
``"advrec"`` logger like any other (``logging.basicConfig(level=logging.INFO)`` shows the
reports). The ``advrec`` command calls ``show_reports()``, which prints them on stderr as
``advrec: <message>``.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, Set, TextIO

logger = logging.getLogger("advrec")
logger.addHandler(logging.NullHandler())

_CLI_HANDLER_NAME = "advrec-cli"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each message (tests and notebooks replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_reported_once: Set[str] = set()


def report(message: str, once: bool = False) -> None:
    """Tell the user something they should know (never silently drop or substitute data).

    ``once``: a fact that every call would repeat word for word (where a dataset came from, a
    property of the evaluation data) is told the first time only in this process."""
    if once:
        if message in _reported_once:
            return
        _reported_once.add(message)
    logger.info(message)


def show_reports(stream: Optional[TextIO] = None) -> logging.Handler:
    """Print the library's reports on ``stream`` (stderr) as ``advrec: <message>``, at INFO.

    Idempotent: a second call replaces the first handler. The reports stop propagating to the
    root logger meanwhile, so an application's own root handler does not print them twice."""
    for h in list(logger.handlers):
        if h.get_name() == _CLI_HANDLER_NAME:
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.set_name(_CLI_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("advrec: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler
