"""The interactions an experiment runs on: a registered dataset or the user's own file."""
from __future__ import annotations

from typing import Any, Optional, Tuple

from .. import data as D


def implicit_interactions(dataset: str, data_path: Optional[str], data_format: Optional[str]
                          ) -> Tuple[Any, str, Optional[Any]]:
    """(implicit Interactions, a description of the source, the registered Dataset or None).

    ``data_path`` (read by ``advrec.data.load_file``) wins over ``dataset``; every rating
    counts as one interaction.
    """
    if data_path is not None:
        loaded = D.load_file(data_path, data_format)
        ratings = loaded.interactions if isinstance(loaded, D.Dataset) else loaded
        if not hasattr(ratings, "to_csr"):
            raise ValueError(f"data_path: {data_path} holds no user-item interactions")
        return D.implicit(ratings, _quiet=True), str(data_path), None
    registered = D.load(dataset)
    return D.implicit(registered.interactions, _quiet=True), f"{dataset} ({registered.portable_source()})", registered


def check_dataset(dataset: Any, data_path: Optional[str] = None) -> None:
    """ValueError unless ``dataset`` names a registered dataset (options and all) or ``data_path``
    is given: a typo fails when the config is checked, not after the first model trained."""
    if data_path is None:
        D.parse_name(dataset)
