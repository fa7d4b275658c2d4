"""Tables and figures of results."""
from .figures import curves, grouped_bars, have_matplotlib, histograms, line_chart, stacked_shares
from .tables import format_table

__all__ = ["format_table", "curves", "line_chart", "stacked_shares", "grouped_bars", "histograms", "have_matplotlib"]
