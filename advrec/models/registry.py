"""The model registry behind checkpoints: a name in a checkpoint's JSON -> the class to rebuild.

``register_model(cls)`` (a decorator too) registers a class under its qualified name
``module.QualName`` (e.g. ``"mypkg.models.TwoTower"``), so two user classes of the same name in
different modules never collide. The built-in models are registered under their bare names
(``"MF"``, ``"VBPR"``, ...), which is what their checkpoints store and always have, with their
qualified names (``"advrec.models.mf.MF"``) as aliases.

``find_model(name)`` is ``load_checkpoint``'s lookup: a registered name gives its class; an
unregistered qualified name first imports its module (``importlib.import_module``), whose
``@register_model`` then runs, and is looked up again. Only registered classes are ever built:
importing a module that defines but does not register a class still fails.
"""
from __future__ import annotations

import importlib
import sys
from typing import Dict, Iterator, Mapping, Optional, Type, TypeVar

from torch import nn

__all__ = ["ModelRegistry", "MODELS", "register_model", "qualified_name", "find_model"]

M = TypeVar("M", bound=type)


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class: the name a checkpoint of a user model stores."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(cls: type) -> str:
    """The class's qualified name, identity and file (two class objects may share a name)."""
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return f"{qualified_name(cls)} (class object at {id(cls):#x}{f', from {file}' if file else ''})"


class ModelRegistry(Mapping[str, type]):
    """Read-only mapping from checkpoint names to model classes (``advrec.models.MODELS``).

    Keys are every accepted name: the built-ins' bare names and qualified aliases, and user
    classes' qualified names. Add to it with ``register_model``; item assignment is refused.
    """

    def __init__(self) -> None:
        self._classes: Dict[str, type] = {}
        self._names: Dict[type, str] = {}

    def __getitem__(self, name: str) -> type:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __setitem__(self, name: str, cls: type) -> None:
        raise TypeError(f"advrec.models.MODELS is read-only; register {getattr(cls, '__name__', cls)!r} with "
                        "advrec.models.register_model(cls) (usable as a decorator)")

    def __repr__(self) -> str:
        return f"ModelRegistry({sorted(self._names.values())})"

    def name_of(self, cls: type) -> Optional[str]:
        """The name a checkpoint of ``cls`` stores, or None when ``cls`` is not registered
        (a subclass of a registered class is not registered)."""
        return self._names.get(cls)

    def _add(self, name: str, cls: type) -> None:
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"cannot register {_describe(cls)} as {name!r}: that name already belongs to "
                             f"{_describe(existing)}; a checkpoint could not tell them apart. Two class objects "
                             "with one qualified name come from a module reloaded or a notebook cell re-run, or "
                             "a class defined twice (inside a function); rename one, or register a class once")
        self._classes[name] = cls

    def _register(self, cls: type, name: str, aliases: tuple = ()) -> None:
        for n in (name, *aliases):  # check every name before adding any
            existing = self._classes.get(n)
            if existing is not None and existing is not cls:
                self._add(n, cls)  # raises, naming both classes
        for n in (name, *aliases):
            self._add(n, cls)
        self._names.setdefault(cls, name)


MODELS = ModelRegistry()


def register_model(cls: M) -> M:
    """Register a model class for checkpoints under its qualified name ``module.QualName``;
    returns ``cls``, so it works as a decorator::

        @advrec.models.register_model
        class TwoTower(Recommender): ...

    ``save_checkpoint`` refuses an unregistered class, and ``load_checkpoint`` in a fresh
    process imports the module named in the checkpoint, which re-runs this decorator, so the
    class must be defined at the top level of an importable module (not ``__main__`` or inside
    a function) for a checkpoint to load elsewhere. Registering the same class again is a
    no-op; another class under a name already in use is a ``ValueError`` naming both.
    """
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"register_model takes a model class (a torch.nn.Module subclass, normally an "
                        f"advrec.models.Recommender), got {cls!r}")
    if MODELS.name_of(cls) is None:
        MODELS._register(cls, qualified_name(cls))
    return cls


def _register_builtin(cls: type) -> None:
    """A built-in model: its bare name (what its checkpoints store) and its qualified alias."""
    MODELS._register(cls, cls.__name__, (qualified_name(cls),))


def _import_owner(name: str) -> Optional[str]:
    """Import the longest importable module prefix of ``name`` (``pkg.mod.Outer.Inner`` tries
    ``pkg.mod.Outer``, then ``pkg.mod``, ...); the module imported, or None. An import error raised
    inside the module itself (a missing dependency of it) propagates."""
    parts = name.split(".")
    if not all(p.isidentifier() for p in parts[:-1]):
        return None  # not a module path (empty parts, relative names): never imported
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            raise
        return module
    return None


def find_model(name: object) -> Type[nn.Module]:
    """The registered class a checkpoint names; imports the module of an unregistered
    qualified name first (its ``@register_model`` registers it). ``ValueError`` otherwise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"the model name must be a non-empty string, got {name!r}")
    cls = MODELS.get(name)
    if cls is not None:
        return cls
    if "<locals>" in name:
        why = "the class was defined inside a function, so no import can define it again"
    elif "." not in name:
        why = "it is neither a built-in model nor a qualified name module.QualName"
    else:
        module = _import_owner(name)
        cls = MODELS.get(name)
        if cls is not None:
            return cls
        if module is None:
            why = f"no module of {name!r} can be imported (is its package on sys.path / PYTHONPATH?)"
        elif module == "__main__":
            why = ("the class was defined in a script or notebook (__main__); define it in an importable "
                   "module to load its checkpoints elsewhere")
        else:
            why = f"importing module {module!r} did not register it"
    builtins = sorted(n for n in MODELS if "." not in n)
    raise ValueError(f"unknown model {name!r}: {why}. A model class must be registered in its module with "
                     f"@advrec.models.register_model (or advrec.models.register_model(cls)), and that module "
                     f"importable where the checkpoint is loaded; built-in models: {builtins}")
