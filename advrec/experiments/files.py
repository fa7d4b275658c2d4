"""Experiments as files: a YAML file names an experiment and its settings, and one runner runs it.

    experiment: gan          # attack (MSAP), certify (FM), amr, cat, poison, detect, gan
    quick: false             # start from the experiment's quick settings instead of the full ones
    config:                  # fields of the experiment's config class (GANConfig, ...)
      seeds: [0, 1, 2]

``advrec run FILE.yaml [key=value ...]`` and ``advrec.experiments.run(FILE_or_mapping)`` read it;
``key=value`` overrides a field (``seeds=[0]``, ``config.cfgan_epochs=100``, ``quick=true``;
values are YAML). ``track: tensorboard`` or ``track: mlflow`` (with ``track_dir``) also sends the
report's numbers there (`advrec.experiments.tracking`). The shipped files (``advrec/experiments/configs/*.yaml``, ``shipped()``) hold
every field of each experiment's defaults, so running one reproduces its committed report.

PyYAML, not OmegaConf: the files are plain data (no interpolation, no merging of file trees), and
``yaml.safe_load`` builds nothing but dicts, lists and scalars.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass(frozen=True)
class Kind:
    """Where an experiment lives: its config class, runner and report module."""

    module: str
    config: str
    runner: str
    report: str

    def load(self) -> Tuple[type, Callable[..., Any], Any]:
        mod = importlib.import_module(f"advrec.experiments.{self.module}")
        report = importlib.import_module(f"advrec.experiments.{self.report}")
        return getattr(mod, self.config), getattr(mod, self.runner), report


KINDS: Dict[str, Kind] = {
    "attack": Kind("msap", "MSAPConfig", "run_msap", "msap_report"),
    "certify": Kind("fm_certify", "FMCertifyConfig", "run_fm_certify", "fm_certify_report"),
    "amr": Kind("amr", "AMRConfig", "run_amr", "amr_report"),
    "cat": Kind("cat", "CATConfig", "run_cat", "cat_report"),
    "poison": Kind("poison", "PoisonConfig", "run_poison", "poison_report"),
    "detect": Kind("detect", "DetectConfig", "run_detect", "detect_report"),
    "gan": Kind("gan", "GANConfig", "run_gan", "gan_report"),
}

Source = Union[str, Path, Mapping[str, Any]]


@dataclass(frozen=True)
class ExperimentFile:
    """A resolved experiment file: which experiment, quick or not, and its config object."""

    experiment: str
    quick: bool
    config: Any
    grid: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()   # (field, its values) per grid axis, in file order
    workers: int = 1                                       # grid cells run in this many processes
    track: Optional[str] = None                            # also send the numbers to tensorboard / mlflow
    track_dir: Optional[str] = None                        # where (default: OUT/tensorboard or OUT/mlflow)

    def to_dict(self) -> Dict[str, Any]:
        """The file's content, every field spelt out (lists for tuples): ``dump`` writes it."""
        out: Dict[str, Any] = {"experiment": self.experiment, "quick": self.quick,
                               "config": _plain(dataclasses.asdict(self.config))}
        if self.grid:
            out["grid"] = {k: _plain(list(v)) for k, v in self.grid}
            out["workers"] = self.workers
        if self.track is not None:
            out["track"] = self.track
        if self.track_dir is not None:
            out["track_dir"] = self.track_dir
        return out

    def tracking_to(self, out: Optional[Union[str, Path]]) -> Optional[Path]:
        """The folder or store the numbers are tracked to (None: not tracked)."""
        if self.track is None:
            return None
        if self.track_dir is not None:
            return Path(self.track_dir)
        return Path(out if out is not None else ".") / ("tensorboard" if self.track == "tensorboard" else "mlflow")

    def cells(self) -> List[Tuple[Dict[str, Any], Any]]:
        """Every combination of the grid's values (the last axis fastest): ``(values, config)``;
        one cell, the config itself, without a grid."""
        combos: List[Dict[str, Any]] = [{}]
        for name, values in self.grid:
            combos = [{**c, name: v} for c in combos for v in values]
        return [(c, dataclasses.replace(self.config, **c)) for c in combos]


def _plain(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _number(name: str, like: Any, value: Any) -> Any:
    """``value`` as the kind of number ``like`` is: YAML 1.1 reads ``1e-3`` as a string, and an
    int where a float is meant is fine; anything else that is not a number is refused."""
    if isinstance(like, bool) or isinstance(value, bool) or not isinstance(like, (int, float)):
        return value
    if isinstance(value, str):
        try:
            value = float(value) if isinstance(like, float) else int(value)
        except ValueError:
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(like, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return value


def _coerce(name: str, like: Any, value: Any) -> Any:
    """A field's value from YAML: lists become tuples, numbers take the default's kind."""
    if isinstance(value, list):
        items = tuple(like) if isinstance(like, tuple) and like else ()
        return tuple(_number(name, items[0], v) if items else v for v in value)
    return _number(name, like, value)


def _yaml():
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - pyyaml is a dependency
        raise ImportError("experiment files need PyYAML (pip install pyyaml)") from err
    return yaml


def _read(source: Source) -> Dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{path}: no such experiment file")
    data = _yaml().safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an experiment file is a mapping with 'experiment' (and 'quick', 'config'), "
                         f"got {type(data).__name__}")
    return data


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """``key=value`` strings onto the file's mapping: ``experiment``, ``quick`` or a config field
    (``config.`` prefix optional); the value is read as YAML (``[0, 1]``, ``1e-4``, ``true``)."""
    settings = data.get("config") or {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"config: must be a mapping of the experiment's config fields, got {type(settings).__name__}")
    out = {**data, "config": dict(settings)}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value, e.g. seeds=[0] or config.epochs=10")
        value = _yaml().safe_load(text)
        if key in ("experiment", "quick", "workers", "track", "track_dir"):
            out[key] = value
        elif key.startswith("grid."):
            out["grid"] = {**(out.get("grid") or {}), key[len("grid."):]: value}
        else:
            out["config"][key[len("config."):] if key.startswith("config.") else key] = value
    return out


def _fields_of(cls: type, section: Any, where: str) -> Mapping[str, Any]:
    """A file section (``config``, ``grid``) as a mapping whose keys are all fields of ``cls``."""
    section = section or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{where}: must be a mapping of {cls.__name__} fields, got {type(section).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(section) - known)
    if bad:
        raise ValueError(f"{where}: {cls.__name__} has no field{'s' * (len(bad) > 1)} {bad}; its fields are "
                         f"{sorted(known)}")
    return section


def resolve(source: Source, overrides: Sequence[str] = ()) -> ExperimentFile:
    """The experiment and its config object from a file or mapping, after ``overrides``;
    unknown names raise a ValueError that lists the known ones."""
    data = apply_overrides(_read(source), overrides)
    unknown = set(data) - {"experiment", "quick", "config", "grid", "workers", "track", "track_dir"}
    if unknown:
        raise ValueError(f"unknown top-level keys {sorted(unknown)}; expected experiment, quick, config, grid, "
                         "workers, track, track_dir")
    name = data.get("experiment")
    if name not in KINDS:
        raise ValueError(f"experiment: must be one of {sorted(KINDS)}, got {name!r}")
    quick = data.get("quick", False)
    if not isinstance(quick, bool):
        raise ValueError(f"quick: must be true or false, got {quick!r}")
    cls, _, _ = KINDS[name].load()
    settings = _fields_of(cls, data.get("config"), "config")
    base = cls.quick() if quick else cls()
    values = {k: _coerce(k, getattr(base, k), v) for k, v in settings.items()}
    config = dataclasses.replace(base, **values)
    grid = _fields_of(cls, data.get("grid"), "grid")
    axes = []
    for k, vals in grid.items():
        if not isinstance(vals, list) or not vals:
            raise ValueError(f"grid: {k} must be a non-empty list of values, got {vals!r}")
        axes.append((k, tuple(_coerce(k, getattr(base, k), v) for v in vals)))
    workers = data.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: must be a positive int, got {workers!r}")
    track, track_dir = data.get("track"), data.get("track_dir")
    if track is not None:
        from .tracking import check
        check(track)
    if track_dir is not None and (not isinstance(track_dir, str) or not track_dir):
        raise ValueError(f"track_dir: must be a folder or tracking URI, got {track_dir!r}")
    spec = ExperimentFile(name, quick, config, tuple(axes), workers, track, track_dir)
    for values, cell in spec.cells():          # every cell is checked before any runs
        if hasattr(cell, "validate"):
            try:
                cell.validate()
            except ValueError as err:
                raise ValueError(f"{err} (grid cell {values})" if values else str(err)) from None
    return spec


def run(source: Union[Source, ExperimentFile], overrides: Sequence[str] = (), out: Optional[Union[str, Path]] = None,
        run_name: Optional[str] = None) -> Any:
    """Run an experiment file (path, mapping or ``ExperimentFile``); with ``out``, write its
    report there; with the file's ``track``, send its numbers to TensorBoard / MLflow too (run
    ``run_name``, default ``<experiment>-<config hash>``). Returns the experiment's result record."""
    spec = source if isinstance(source, ExperimentFile) else resolve(source, overrides)
    _, runner, report = KINDS[spec.experiment].load()
    result = runner(spec.config)
    if isinstance(result, tuple):          # run_fm_certify also returns the trained models
        result = result[0]
    if out is not None:
        report.write_report(result, Path(out))
    if spec.track is not None:
        from .provenance import config_sha256
        from .tracking import track

        name = run_name or f"{spec.experiment}-{config_sha256(spec.config)[:12]}"
        track(result.to_dict(), spec.track, spec.tracking_to(out), name)
    return result


#: keys whose values a re-run cannot repeat (wall times, the run's environment)
UNREPEATABLE = ("provenance",)


def _repeatable(key: str) -> bool:
    return key not in UNREPEATABLE and "second" not in key and "minute" not in key


def differences(old: Any, new: Any, path: str = "") -> List[str]:
    """Where two report payloads differ (``/seeds[0]/metrics/CFGAN/nDCG@20: 0.43 != 0.44``),
    wall times and provenance left out; numbers must be equal (same seed, same numbers)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: List[str] = []
        for k in sorted(set(old) | set(new), key=str):
            if not _repeatable(str(k)):
                continue
            if k not in old or k not in new:
                out.append(f"{path}/{k}: only in the {'new' if k in new else 'old'} report")
            else:
                out += differences(old[k], new[k], f"{path}/{k}")
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} entries != {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} != {new!r}"]


def rerun(report: Union[str, Path], out: Optional[Union[str, Path]] = None,
          seeds: Optional[Sequence[int]] = None) -> Tuple[Any, List[str]]:
    """Run again the experiment a report (``<name>.json`` as written by ``--out``) records, with
    the config it holds, and compare: returns the new result and the differences (empty: the
    same numbers). The new report is written to ``out`` (a temporary folder when None).

    ``seeds``: re-run only these of the report's seeds and compare their per-seed records (and
    the data), a cheap spot check of a long multi-seed report; the aggregates over all seeds are
    then not compared."""
    import json
    import tempfile

    from .records import config_from_dict

    path = Path(report)
    if not path.is_file():
        raise ValueError(f"{path}: no such report")
    name = next((n for n, k in KINDS.items() if k.module == path.stem), None)
    if name is None:
        raise ValueError(f"{path}: a report is named after its experiment "
                         f"({', '.join(k.module + '.json' for k in KINDS.values())})")
    payload = json.loads(path.read_text())
    if not isinstance(payload, dict) or "config" not in payload:
        raise ValueError(f"{path}: not a report (no 'config')")
    cls, _, _ = KINDS[name].load()
    config = config_from_dict(cls, payload["config"])
    if seeds is not None:
        recorded = [s["seed"] for s in payload.get("seeds") or [] if isinstance(s, dict) and "seed" in s]
        if not recorded or not hasattr(config, "seeds"):
            raise ValueError(f"seeds: {path} has no per-seed records to re-run a part of")
        missing = [s for s in seeds if s not in recorded]
        if not seeds or missing or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds: must be distinct seeds of the report ({recorded}), got {list(seeds)}")
        config = dataclasses.replace(config, seeds=tuple(seeds))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp)
        result = run(ExperimentFile(name, False, config), out=folder)
        new = json.loads((folder / path.name).read_text())
    if seeds is None:
        return result, differences(payload, new)
    old_part = {"data": payload.get("data"), "seeds": [s for s in payload["seeds"] if s["seed"] in seeds]}
    return result, differences(old_part, {"data": new.get("data"), "seeds": new["seeds"]})


def dump(spec: ExperimentFile) -> str:
    """The YAML text of a resolved experiment (every field)."""
    return _yaml().safe_dump(spec.to_dict(), sort_keys=False)


def shipped() -> List[Path]:
    """The experiment files that come with advrec, one per experiment at its defaults."""
    return sorted(CONFIG_DIR.glob("*.yaml"))


__all__ = ["KINDS", "ExperimentFile", "resolve", "run", "rerun", "differences", "dump", "shipped", "apply_overrides",
           "CONFIG_DIR"]
