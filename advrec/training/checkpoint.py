"""Checkpoints as ``state_dict`` (.pt) plus a JSON config, loaded with ``weights_only=True``.

No Python objects are pickled: configs are JSON, so a checkpoint loads on any later version
without executing code (pickled config objects are a known breakage elsewhere).

The JSON names the model class by its registry name (``advrec.models.register_model``): a
built-in's bare name (``"MF"``) or a user class's qualified name (``"mypkg.models.TwoTower"``).
Loading a user class in a fresh process imports its module (``importlib.import_module``), whose
``@register_model`` registers it; a class that is not registered is never built.

File names. ``path`` names the pair ``<path>.pt`` + ``<path>.json``; a trailing ``.pt`` or
``.json`` (exactly those) is dropped first, so ``"x"``, ``"x.pt"`` and ``"x.json"`` name one
checkpoint, and ``"run.epoch1"`` is ``run.epoch1.pt`` + ``run.epoch1.json`` (any other dot is part
of the name; before, ``"run.epoch1"`` and ``"run.epoch2"`` both wrote ``run.pt``).

Crash safety. Each file is written to a temporary file in the same directory (``.<name>.<random>.tmp``),
flushed and fsynced, then renamed over the final name with ``os.replace`` (atomic on POSIX and
Windows), so each of the two files is always either the old complete one or the new complete one,
and an interrupted or failed save removes its temporary files. The sidecar records the size and
sha256 of the ``.pt`` it was written with (``pt_size``, ``pt_sha256``), and the sidecar is renamed
*first*: a crash between the two renames leaves the new sidecar beside the old weights, whose hash
cannot match, so ``load_checkpoint`` refuses the pair with an error naming both files (whatever
format the old sidecar had). The other order would miss that case when the old sidecar predates
the hash. Sidecars written before the hash existed still load, unverified.

Untrusted sizes. ``load_checkpoint`` reads the state dict first and checks the sidecar's config
against it before building anything for real: the model is first built on PyTorch's ``meta``
device (no memory), and every parameter and buffer's name and shape is compared with the
state dict; all the differences are reported by name in one ``ValueError``. A class rebuilt through
``from_config`` (``VBPR``, ``DUIF``: the constructor does numpy work on the feature matrix, so it
cannot be built on ``meta``), or one whose constructor fails on ``meta``, gets a check of the
declared sizes instead: no int in its config (except ``seed`` entries) may exceed the largest
dimension of the state dict's tensors; its shapes are compared after it is built.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable, List, Mapping, Optional, Tuple, Union

import torch

from .._version import __version__
from ..models import FromConfig, Recommender
from ..models.registry import MODELS, find_model, qualified_name

PathLike = Union[str, Path]

_SUFFIXES = (".pt", ".json")


def _paths(path: PathLike) -> Tuple[Path, Path]:
    """``(<base>.pt, <base>.json)``; only a trailing ``.pt`` or ``.json`` is dropped from ``path``."""
    p = Path(path)
    name = p.name
    for s in _SUFFIXES:
        if name.endswith(s) and len(name) > len(s):
            name = name[: -len(s)]
            break
    return p.with_name(name + ".pt"), p.with_name(name + ".json")


def _legacy_paths(path: PathLike) -> Tuple[Path, Path]:
    """Where versions before the dotted-name fix put the checkpoint (any last suffix dropped)."""
    base = Path(path)
    if base.suffix:
        base = base.with_suffix("")
    return base.with_suffix(".pt"), base.with_suffix(".json")


# ---- configs -----------------------------------------------------------------------------------
def _nonfinite(value: Any, where: str) -> Optional[str]:
    """The location of the first non-finite float in a JSON value, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} = {value!r}"
    if isinstance(value, dict):
        for k, v in value.items():
            found = _nonfinite(v, f"{where}[{k!r}]")
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _nonfinite(v, f"{where}[{i}]")
            if found:
                return found
    return None


def _check_config(config: Any, source: str) -> dict:
    """``config`` if it is a dict of string keys without NaN/inf; a ``ValueError`` otherwise."""
    if not isinstance(config, dict):
        raise ValueError(f"{source}: the config must be a JSON object (a dict of the constructor's keyword "
                         f"arguments), got {type(config).__name__}: {config!r:.200}")
    bad = [k for k in config if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{source}: the config's keys must be strings (keyword arguments), got {bad!r:.200}")
    found = _nonfinite(config, "config")
    if found:
        raise ValueError(f"{source}: the config holds a non-finite number ({found}); a checkpoint's config "
                         f"must be finite")
    return config


# ---- writing -----------------------------------------------------------------------------------
def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")


def _write_temp(final: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """A new temporary file beside ``final`` holding what ``write`` wrote, flushed and fsynced.
    Removed again (and the error re-raised, KeyboardInterrupt included) when writing fails."""
    for _ in range(100):
        tmp = _temp_name(final)
        try:  # os.open with 0o666 so the file gets the usual umask permissions (mkstemp gives 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"could not create a temporary file beside {final}")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _digest(path: Path) -> Tuple[str, int]:
    """sha256 (hex) and size in bytes of a file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def save_checkpoint(model: Recommender, path: PathLike, extra: Optional[dict] = None) -> Path:
    """Write ``<path>.pt`` (weights) and ``<path>.json`` (model class, config, ``extra``, and the
    size and sha256 of the ``.pt``); returns the ``.pt`` path.

    The class must be registered (``@advrec.models.register_model``) and ``config()`` must
    return the constructor's keyword arguments as a JSON-serialisable dict of finite values.
    Only a trailing ``.pt`` / ``.json`` is dropped from ``path`` (``"run.epoch1"`` writes
    ``run.epoch1.pt``). Both files are written to temporary files and renamed into place (the
    sidecar first), so an interrupted save never leaves a half-written file under either name;
    see the module docstring.
    """
    name = MODELS.name_of(type(model))
    if name is None:
        raise ValueError(f"model class {qualified_name(type(model))} is not registered, so a checkpoint could "
                         f"not name it; decorate the class with @advrec.models.register_model (or call "
                         f"advrec.models.register_model({type(model).__name__})) in the module that defines it")
    pt, js = _paths(path)
    meta = {"model": name, "config": model.config(), "advrec_version": __version__, "extra": extra or {}}
    try:
        json.dumps(meta["config"])
    except TypeError as e:
        raise TypeError(f"{type(model).__name__}.config() must return JSON-serialisable constructor keyword "
                        f"arguments, got {meta['config']!r}: {e}") from None
    _check_config(meta["config"], f"{type(model).__name__}.config()")
    json.dumps(meta)  # fail before writing anything if extra is not JSON-serialisable
    state = model.state_dict()
    pt.parent.mkdir(parents=True, exist_ok=True)
    tmp_pt: Optional[Path] = None
    tmp_js: Optional[Path] = None
    try:
        tmp_pt = _write_temp(pt, lambda f: torch.save(state, f))
        meta["pt_sha256"], meta["pt_size"] = _digest(tmp_pt)
        text = json.dumps(meta, indent=2).encode("utf-8")
        tmp_js = _write_temp(js, lambda f: f.write(text))
        # the sidecar first: a crash between the renames leaves a new sidecar whose hash the old
        # .pt cannot match, which load_checkpoint detects (see the module docstring)
        os.replace(tmp_js, js)
        tmp_js = None
        os.replace(tmp_pt, pt)
        tmp_pt = None
        _fsync_dir(pt.parent)
    finally:
        for tmp in (tmp_js, tmp_pt):
            if tmp is not None:
                _remove(tmp)
    return pt


# ---- reading -----------------------------------------------------------------------------------
def _read_sidecar(js: Path) -> dict:
    try:
        meta = json.loads(js.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{js} is not a checkpoint sidecar (not valid JSON: {e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{js} is not a checkpoint sidecar: expected a JSON object with 'model' and 'config', "
                         f"got {type(meta).__name__}")
    if "config" not in meta:
        raise ValueError(f"{js} is not a checkpoint sidecar: it has no 'config'")
    _check_config(meta["config"], str(js))
    return meta


def _leftovers(pt: Path, js: Path) -> List[str]:
    try:
        return sorted(str(p) for f in (pt, js) for p in f.parent.glob(f".{f.name}.*.tmp"))
    except OSError:  # pragma: no cover
        return []


def _verify_pair(pt: Path, js: Path, meta: dict) -> None:
    """The .pt is the one the sidecar was written with (sidecars without a hash: not checked)."""
    want_hash, want_size = meta.get("pt_sha256"), meta.get("pt_size")
    if want_hash is None and want_size is None:
        return  # written before the hash existed
    if (not isinstance(want_hash, str) or isinstance(want_size, bool) or not isinstance(want_size, int)):
        raise ValueError(f"{js}: pt_sha256 / pt_size must be a hex string and an int, got "
                         f"{want_hash!r:.80} / {want_size!r:.80}")
    size = pt.stat().st_size
    digest = None
    if size == want_size:
        digest, size = _digest(pt)
    if size != want_size or digest != want_hash:
        got = f"{size} bytes" + (f", sha256 {digest}" if digest else "")
        left = _leftovers(pt, js)
        raise ValueError(
            f"checkpoint files do not belong together: {js} was written with a weights file of {want_size} bytes, "
            f"sha256 {want_hash}, but {pt} has {got}. Either a save was interrupted between its two renames, or "
            f"one of the two files was replaced or copied on its own; re-save the model or restore the matching "
            f"pair" + (f" (temporary files of an interrupted save: {', '.join(left)})" if left else ""))


def _shape_problems(expected: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> List[str]:
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    for k, v in expected.items():
        if k in state and tuple(v.shape) != tuple(state[k].shape):
            problems.append(f"{k}: shape {tuple(v.shape)} from the config, {tuple(state[k].shape)} in the weights")
    if missing:
        problems.append(f"missing from the weights: {', '.join(missing)}")
    if unexpected:
        problems.append(f"in the weights but not in the model: {', '.join(unexpected)}")
    return problems


def _refuse(problems: List[str], cls: type, pt: Path, js: Path, config: dict) -> None:
    if problems:
        raise ValueError(f"the config in {js} does not describe the weights in {pt}: {cls.__name__}(**{config!r:.300}) "
                         f"would have\n  " + "\n  ".join(problems))


def _check_declared_sizes(state: Mapping[str, torch.Tensor], cls: type, pt: Path, js: Path, config: dict) -> None:
    """For a class not built on ``meta``: no int in the config (``seed`` entries excepted) may
    exceed every dimension of the state dict's tensors. Nothing to compare with when the state
    dict holds no dimension at all."""
    dims = [d for v in state.values() for d in v.shape]
    if not dims:
        return
    top = max(dims)
    problems = [f"{k}: {v} in the config, larger than every dimension of the weights (the largest is {top})"
                for k, v in config.items()
                if isinstance(v, int) and not isinstance(v, bool) and "seed" not in k.lower() and v > top]
    _refuse(problems, cls, pt, js, config)


def _meta_model(cls: type, config: dict) -> Optional[torch.nn.Module]:
    """The model built on the ``meta`` device (no memory), or None when its constructor cannot
    be run there (then the real construction reports any config error itself)."""
    try:
        with torch.device("meta"):
            return cls(**config)
    except Exception:
        return None


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Recommender:
    """Rebuild the model from its JSON config and load its weights (no pickled code runs).

    The class is looked up in the registry (``advrec.models.MODELS``); a qualified name not yet
    registered imports its module first, so the module must be importable (on ``sys.path``).
    The ``.pt`` must be the one the sidecar was written with (its size and sha256, for sidecars
    that record them), and the config must describe the state dict's names and shapes, checked
    before the model is built for real; both are a ``ValueError`` naming the two files.
    """
    pt, js = _paths(path)
    for f in (pt, js):
        if not f.exists():
            hint = ""
            old_pt, old_js = _legacy_paths(path)
            if (old_pt, old_js) != (pt, js) and old_pt.exists() and old_js.exists():
                hint = (f"; earlier versions of advrec dropped everything after the last dot of the name, "
                        f"so a checkpoint saved under this name may be {old_pt} + {old_js}: load {old_pt} "
                        f"(it may also hold another checkpoint saved under the same prefix)")
            raise FileNotFoundError(f"checkpoint file {f} does not exist{hint}")
    meta = _read_sidecar(js)
    _verify_pair(pt, js, meta)
    try:
        cls = find_model(meta.get("model"))
    except ValueError as e:
        raise ValueError(f"{js}: {e}") from None
    config = meta["config"]
    state = torch.load(pt, map_location=map_location, weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{pt} does not hold a state dict (a mapping of names to tensors)")
    if isinstance(cls, FromConfig):
        # models whose data (e.g. VBPR's features) is in the state dict rebuild through from_config,
        # which may do real work (numpy): check the declared sizes first, the shapes after
        _check_declared_sizes(state, cls, pt, js, config)
        model = cls.from_config(config)
    else:
        probe = _meta_model(cls, config)
        if probe is None:
            _check_declared_sizes(state, cls, pt, js, config)
        else:
            _refuse(_shape_problems(probe.state_dict(), state), cls, pt, js, config)
            del probe
        model = cls(**config)
    _refuse(_shape_problems(model.state_dict(), state), cls, pt, js, config)
    model.load_state_dict(state)
    return model
