"""Checkpoints as ``state_dict`` (.pt) plus a JSON config, loaded with ``weights_only=True``.

No Python objects are pickled: configs are JSON, so a checkpoint loads on any later version
without executing code (pickled config objects are a known breakage elsewhere).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch

from .. import __version__
from ..models import MODELS, Recommender

PathLike = Union[str, Path]


def _paths(path: PathLike):
    base = Path(path)
    if base.suffix in (".pt", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".pt"), base.with_suffix(".json")


def save_checkpoint(model: Recommender, path: PathLike, extra: Optional[dict] = None) -> Path:
    """Write ``<path>.pt`` (weights) and ``<path>.json`` (model class, config, ``extra``)."""
    name = type(model).__name__
    if MODELS.get(name) is not type(model):
        raise ValueError(f"model class {name} is not registered in advrec.models.MODELS")
    pt, js = _paths(path)
    pt.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": name, "config": model.config(), "advrec_version": __version__, "extra": extra or {}}
    json.dumps(meta)  # fail before writing anything if extra is not JSON-serialisable
    torch.save(model.state_dict(), pt)
    js.write_text(json.dumps(meta, indent=2))
    return pt


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Recommender:
    """Rebuild the model from its JSON config and load its weights (no pickled code runs)."""
    pt, js = _paths(path)
    for f in (pt, js):
        if not f.exists():
            raise FileNotFoundError(f"checkpoint file {f} does not exist")
    meta = json.loads(js.read_text())
    cls = MODELS.get(meta.get("model"))
    if cls is None:
        raise ValueError(f"{js}: unknown model {meta.get('model')!r}; known: {sorted(MODELS)}")
    build = getattr(cls, "from_config", None)  # models whose data (e.g. VBPR's features) is in the state dict
    model = build(meta["config"]) if build is not None else cls(**meta["config"])
    model.load_state_dict(torch.load(pt, map_location=map_location, weights_only=True))
    return model
