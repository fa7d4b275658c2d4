"""Tables and figures of results."""
from .tables import format_table

__all__ = ["format_table"]
