"""Optional export of a run's numbers to TensorBoard or MLflow, for teams whose dashboards live there.

The report JSON stays the record; tracking copies it: every number becomes a scalar named by its
path in the report (``seeds/0/metrics/CFGAN/nDCG@20``), every list of numbers (a training or
attack curve) a series over its steps, and the config the run's parameters. Neither package is
a dependency (``pip install "advrec[track]"``: tensorboard; mlflow-skinny with
SQLAlchemy and Alembic for its local SQLite store); asking for one that is missing is refused before
the run starts.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

TRACKERS = ("tensorboard", "mlflow")
#: lists that hold one value per user or per target, not a curve over steps
_NOT_CURVES = {"user_nDCG"}
_MAX_SERIES = 5000


def check(tracker: str) -> None:
    """ValueError when ``tracker`` is unknown or its package is not installed."""
    if tracker not in TRACKERS:
        raise ValueError(f"track: must be one of {', '.join(TRACKERS)}, got {tracker!r}")
    if importlib.util.find_spec(tracker) is None:        # the packages are named as the trackers
        extra = "tensorboard" if tracker == "tensorboard" else "mlflow-skinny sqlalchemy alembic"
        raise ValueError(f"track: {tracker} is not installed (pip install {extra}, or advrec[track])")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(v: float) -> bool:
    return abs(v) != float("inf") and v == v


def flatten(payload: Mapping[str, Any]) -> Tuple[Dict[str, float], Dict[str, List[float]]]:
    """(scalars, series) of a report payload, by path; the config, provenance and wall times are
    left to the parameters, NaN and infinities are dropped (neither tool stores them)."""
    scalars: Dict[str, float] = {}
    series: Dict[str, List[float]] = {}

    def walk(x: Any, path: str) -> None:
        if isinstance(x, Mapping):
            for k, v in x.items():
                walk(v, f"{path}/{k}" if path else str(k))
        elif isinstance(x, list):
            key = path.rsplit("/", 1)[-1]
            if x and all(_number(v) for v in x):
                if key not in _NOT_CURVES and len(x) <= _MAX_SERIES:
                    series[path] = [float(v) for v in x]
            else:
                for i, v in enumerate(x):
                    walk(v, f"{path}/{i}")
        elif _number(x) and _finite(float(x)):
            scalars[path] = float(x)

    walk({k: v for k, v in payload.items() if k not in ("config", "provenance", "seconds")}, "")
    return scalars, series


def params(payload: Mapping[str, Any]) -> Dict[str, str]:
    """The run's config as flat string parameters (``config/seeds`` = ``[0, 1, 2]``)."""
    config = payload.get("config") or {}
    out = {f"config/{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in config.items()}
    prov = payload.get("provenance") or {}
    for k in ("advrec", "commit", "config_sha256", "data_sha256"):
        if prov.get(k):
            out[f"provenance/{k}"] = str(prov[k])
    return out


def _mlflow_key(path: str) -> str:
    # MLflow keys: alphanumerics, _ - . space / only
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", path)


def track(payload: Mapping[str, Any], tracker: str, where: str | Path, run_name: str) -> None:
    """Write a report payload's numbers to ``tracker``: TensorBoard event files under
    ``where/run_name``, or an MLflow run named ``run_name`` under the experiment ``advrec`` in the
    store ``where``: a tracking URI (``http://host:5000``, ``sqlite:///file.db``) or a folder,
    which gets an SQLite store ``mlflow.db`` (MLflow's plain-file store is retired)."""
    check(tracker)
    scalars, series = flatten(payload)
    if tracker == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(Path(where) / run_name))
        try:
            writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params(payload).items()))
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, 0)
            for tag, values in series.items():
                for step, value in enumerate(values):
                    if _finite(value):
                        writer.add_scalar(tag, value, step)
        finally:
            writer.close()
        return
    import time

    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    if "://" in str(where) or str(where).startswith("databricks"):
        uri = str(where)
    else:
        Path(where).mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{(Path(where) / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("advrec")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("advrec")
    run = client.create_run(experiment_id, run_name=run_name)
    now = int(time.time() * 1000)
    metrics = [Metric(_mlflow_key(k), v, now, 0) for k, v in scalars.items()]
    metrics += [Metric(_mlflow_key(k), v, now, step) for k, vs in series.items()
                for step, v in enumerate(vs) if _finite(v)]
    params_ = [Param(_mlflow_key(k), v[:6000]) for k, v in params(payload).items()]
    for start in range(0, len(params_), 100):                # the batch API's limits
        client.log_batch(run.info.run_id, params=params_[start:start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
    client.set_terminated(run.info.run_id)


__all__ = ["TRACKERS", "check", "flatten", "params", "track"]
