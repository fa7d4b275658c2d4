"""Checkpoints as ``state_dict`` (.pt) plus a JSON config, loaded with ``weights_only=True``.

No Python objects are pickled: configs are JSON, so a checkpoint loads on any later version
without executing code (pickled config objects are a known breakage elsewhere).

The JSON names the model class by its registry name (``advrec.models.register_model``): a
built-in's bare name (``"MF"``) or a user class's qualified name (``"mypkg.models.TwoTower"``).
Loading a user class in a fresh process imports its module (``importlib.import_module``), whose
``@register_model`` registers it; a class that is not registered is never built.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

from .._version import __version__
from ..models import FromConfig, Recommender
from ..models.registry import MODELS, find_model, qualified_name

PathLike = Union[str, Path]


def _paths(path: PathLike) -> Tuple[Path, Path]:
    base = Path(path)
    if base.suffix in (".pt", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".pt"), base.with_suffix(".json")


def save_checkpoint(model: Recommender, path: PathLike, extra: Optional[dict] = None) -> Path:
    """Write ``<path>.pt`` (weights) and ``<path>.json`` (model class, config, ``extra``).

    The class must be registered (``@advrec.models.register_model``) and ``config()`` must
    return the constructor's keyword arguments as a JSON-serialisable dict.
    """
    name = MODELS.name_of(type(model))
    if name is None:
        raise ValueError(f"model class {qualified_name(type(model))} is not registered, so a checkpoint could "
                         f"not name it; decorate the class with @advrec.models.register_model (or call "
                         f"advrec.models.register_model({type(model).__name__})) in the module that defines it")
    pt, js = _paths(path)
    pt.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": name, "config": model.config(), "advrec_version": __version__, "extra": extra or {}}
    try:
        json.dumps(meta["config"])
    except TypeError as e:
        raise TypeError(f"{type(model).__name__}.config() must return JSON-serialisable constructor keyword "
                        f"arguments, got {meta['config']!r}: {e}") from None
    json.dumps(meta)  # fail before writing anything if extra is not JSON-serialisable
    torch.save(model.state_dict(), pt)
    js.write_text(json.dumps(meta, indent=2))
    return pt


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Recommender:
    """Rebuild the model from its JSON config and load its weights (no pickled code runs).

    The class is looked up in the registry (``advrec.models.MODELS``); a qualified name not yet
    registered imports its module first, so the module must be importable (on ``sys.path``).
    """
    pt, js = _paths(path)
    for f in (pt, js):
        if not f.exists():
            raise FileNotFoundError(f"checkpoint file {f} does not exist")
    meta = json.loads(js.read_text())
    try:
        cls = find_model(meta.get("model"))
    except ValueError as e:
        raise ValueError(f"{js}: {e}") from None
    # models whose data (e.g. VBPR's features) is in the state dict rebuild through from_config
    model = cls.from_config(meta["config"]) if isinstance(cls, FromConfig) else cls(**meta["config"])
    model.load_state_dict(torch.load(pt, map_location=map_location, weights_only=True))
    return model
