"""Tracking a run's numbers to TensorBoard and MLflow: what is flattened, that the stores hold the
report's own values (read back through each tool's reader), grids, and the refusals."""
import json

import pytest

from advrec.experiments import files, tracking
from advrec.experiments.grid import run_grid

SMALL = {"experiment": "poison", "quick": True, "config": {
    "dataset": "synthetic:users=200,items=300,interactions=6000,rated=1,seed=4", "n_targets": 2,
    "attacks": ["random"], "target_pools": ["all"]}}


def test_flatten_paths_series_and_what_is_left_out():
    payload = {"config": {"seeds": [0]}, "provenance": {"advrec": "x"}, "seconds": 3.0,
               "seeds": [{"metrics": {"nDCG@20": 0.25, "bad": float("nan"), "name": "MF"},
                          "curves": {"loss": [1.0, 0.5, 0.25]}, "user_nDCG": [0.1, 0.2],
                          "flags": [True, False], "rows": [{"hr": 1}]}]}
    scalars, series = tracking.flatten(payload)
    assert scalars == {"seeds/0/metrics/nDCG@20": 0.25, "seeds/0/rows/0/hr": 1.0}
    assert series == {"seeds/0/curves/loss": [1.0, 0.5, 0.25]}
    assert tracking.params(payload) == {"config/seeds": "[0]", "provenance/advrec": "x"}


def test_tensorboard_holds_the_report_numbers(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = files.run({**SMALL, "track": "tensorboard"}, out=tmp_path / "out", run_name="small")
    scalars, _ = tracking.flatten(result.to_dict())
    assert scalars
    events = EventAccumulator(str(tmp_path / "out" / "tensorboard" / "small"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags >= set(scalars)
    for tag, value in list(scalars.items())[:50]:
        assert events.Scalars(tag)[0].value == pytest.approx(value, rel=1e-6)


def test_mlflow_holds_the_report_numbers_and_config(tmp_path):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "store"
    result = files.run({**SMALL, "track": "mlflow", "track_dir": str(store)})
    payload = result.to_dict()
    scalars, _ = tracking.flatten(payload)
    client = MlflowClient(tracking_uri=f"sqlite:///{(store / 'mlflow.db').resolve()}")
    runs = client.search_runs([client.get_experiment_by_name("advrec").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name.startswith("poison-")
    logged = runs[0].data.metrics
    for key, value in scalars.items():
        assert logged[key.replace("@", "_")] == pytest.approx(value, rel=1e-6)
    assert json.loads(runs[0].data.params["config/seeds"]) == [0]
    assert runs[0].data.params["provenance/config_sha256"] == payload["provenance"]["config_sha256"]


def test_a_grid_tracks_each_computed_cell(tmp_path):
    from mlflow.tracking import MlflowClient

    spec = files.resolve({**SMALL, "track": "mlflow", "grid": {"sizes": [[0.03], [0.05]]}})
    records = run_grid(spec, tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'mlflow' / 'mlflow.db').resolve()}")
    runs = client.search_runs([client.get_experiment_by_name("advrec").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(f"poison-{r['folder'].split('/')[-1]}" for r in records)


def test_refusals_name_the_key(monkeypatch):
    with pytest.raises(ValueError, match="track: must be one of tensorboard, mlflow"):
        files.resolve({**SMALL, "track": "wandb"})
    with pytest.raises(ValueError, match="track_dir"):
        files.resolve({**SMALL, "track": "mlflow", "track_dir": 3})
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"mlflow is not installed \(pip install mlflow-skinny"):
        files.resolve({**SMALL, "track": "mlflow"})
