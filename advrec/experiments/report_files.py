"""The file side that the per-seed experiment reports (MSAP, AMR, CAT) share: what their JSON
holds, its text and the Markdown's, writing both with the figures, and reading a saved report
back into its typed result. Each report module builds one ``ReportFiles`` and names its methods
(``report_json = FILES.json``, ...), so the four shapes cannot drift apart."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, Sequence, Type, TypeVar

from ..report.aggregate import json_text, markdown_text, write_experiment_report
from .records import Check

R = TypeVar("R")


@dataclass(frozen=True)
class ReportFiles(Generic[R]):
    """``name`` the file stem (``msap`` -> msap.json / msap.md), ``title`` the heading's experiment
    name (``"MSAP on <data>"``); ``result_type`` has ``from_dict``/``to_dict`` and a ``data``
    field; ``render_text(result, markdown=, checks=)``, ``acceptance(result)`` and
    ``figures(result, folder)`` are the report's own; ``check_json`` spells a check in the JSON
    (``Check.to_row`` or ``Check.to_dict``: both spellings are in committed reports)."""

    name: str
    title: str
    result_type: Type[R]
    acceptance: Callable[[R], List[Check]]
    render_text: Callable[..., str]
    figures: Callable[[R, Path], List[Path]]
    check_json: Callable[[Check], Dict[str, Any]] = Check.to_row

    def _heading(self, result: R) -> str:
        return f"{self.title} on {result.data}"  # type: ignore[attr-defined]

    def payload(self, result: R, checks: Optional[Sequence[Check]] = None) -> Dict[str, Any]:
        """What the JSON holds: every per-seed number and the acceptance (``checks``, by default
        computed from the records)."""
        checks = self.acceptance(result) if checks is None else checks
        return {**result.to_dict(), "acceptance": [self.check_json(c) for c in checks]}  # type: ignore[attr-defined]

    def json(self, result: R, checks: Optional[Sequence[Check]] = None) -> str:
        """The text of ``<name>.json``."""
        return json_text(self.payload(result, checks))

    def _markdown_body(self, result: R, checks: Optional[Sequence[Check]] = None) -> str:
        """The tables, then the line saying what produced them (reports that recorded it)."""
        body = self.render_text(result, markdown=True, checks=checks)
        provenance = getattr(result, "provenance", None)
        return body if provenance is None else f"{body}\n\n{provenance.line()}"

    def markdown(self, result: R, checks: Optional[Sequence[Check]] = None) -> str:
        """The text of ``<name>.md``."""
        return markdown_text(self._heading(result), self._markdown_body(result, checks))

    def write(self, result: R, out: Path) -> List[Path]:
        """``<name>.json`` (every per-seed number and the acceptance), ``<name>.md`` (the tables)
        and, with matplotlib, the figures; returns the paths written."""
        return write_experiment_report(out, self.name, self._heading(result), self.payload(result),
                                       self._markdown_body(result),
                                       lambda folder: self.figures(result, folder))

    def result_from_json(self, payload: Mapping[str, Any]) -> R:
        """The typed result of a loaded ``<name>.json``, to re-render tables and figures without
        re-running."""
        if not isinstance(payload, Mapping) or not {"config", "seeds"} <= set(payload):
            raise ValueError(f"payload must be a loaded {self.name}.json: a dict with 'config' and 'seeds'")
        return self.result_type.from_dict(payload)  # type: ignore[attr-defined]

    def checks_from_json(self, payload: Mapping[str, Any]) -> List[Check]:
        """The acceptance checks a loaded ``<name>.json`` recorded."""
        return [Check.from_dict(c) for c in payload.get("acceptance", [])]


__all__ = ["ReportFiles"]
