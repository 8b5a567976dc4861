"""logger=mlflow beside TensorBoard (`logger=[tensorboard,mlflow]`, as typed on the command
line): the run is read back through MLflow's own client, and its final metrics, params,
metric history and artifacts must be what the run directory holds. Bad tracking settings
stop the run with one line before anything trains."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import read_metrics
from omegaconf import OmegaConf

import reglab
from reglab.config import ConfigError, validate
from reglab.records.mlflow import ARTIFACTS, MLFlowLogger, absolute_uri, ui_commands

mlflow = pytest.importorskip("mlflow")  # the mlflow extra, which `make test` installs

QUIET = ["callbacks.progress_bar=null", "threads=1", "trainer.max_epochs=3"]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One run logged to TensorBoard and MLflow; (metrics.json, run dir, MLflow run, client)."""
    root = tmp_path_factory.mktemp("mlflow")
    store = f"file:{root}/mlruns"
    overrides = [*QUIET, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={store}"]
    run_dir = root / "run"
    reglab.train(reglab.compose([*overrides, "model.dropout.hidden=0.2"], output_dir=run_dir))
    client = mlflow.tracking.MlflowClient(store)
    experiment = client.get_experiment_by_name("reglab")
    (found,) = client.search_runs([experiment.experiment_id])
    return read_metrics(run_dir), run_dir, found, client


def test_final_metrics_in_mlflow_equal_metrics_json(tracked):
    metrics, _, found, _ = tracked
    assert {"test/acc", "test/nll", "test/ece", "test/brier", "val/best"} <= set(metrics)
    for key, value in metrics.items():
        assert found.data.metrics[key] == pytest.approx(value, rel=1e-6), key
    assert found.info.status == "FINISHED"


def test_metrics_are_logged_per_step(tracked):
    metrics, _, found, client = tracked
    history = client.get_metric_history(found.info.run_id, "val/loss")
    steps = [m.step for m in history]
    assert len(steps) == 3 and steps == sorted(steps) and steps[-1] == metrics["stopped_step"]


def test_a_nested_group_choice_is_a_param_beside_its_parent_group(tmp_path):
    """`model=multitask` from the command line chooses `model/trunk=mlp` too (Hydra's
    choices, in the params of CLI runs); MLflow's file store keeps a param as a file named
    by its key, so `model/trunk` beside `model` ended the run with NotADirectoryError."""
    store = f"file:{tmp_path}/mlruns"
    logger = MLFlowLogger(tracking_uri=store, run_dir=str(tmp_path / "run"))
    logger.log_hyperparams({"model": "multitask", "model/trunk": "mlp", "optimizer.lr": 0.1})
    logger.finalize("success")
    found = mlflow.tracking.MlflowClient(store).get_run(logger.run_id)
    assert found.data.params == {"model": "multitask", "model.trunk": "mlp", "optimizer.lr": "0.1"}


def test_a_run_leaves_the_store_of_later_configs_as_it_was(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri (Lightning's, when the run starts) writes the store into
    MLFLOW_TRACKING_URI: the next run composed in the process tracked into this one's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    logger = MLFlowLogger(tracking_uri=f"file:{tmp_path}/mlruns", run_dir=str(tmp_path / "run"))
    logger.log_hyperparams({"seed": 0})
    logger.finalize("success")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert reglab.compose(["logger=mlflow"]).logger.mlflow.tracking_uri == "file:./mlruns"


def test_the_store_is_mlflows_own_variable_if_set_else_mlruns_here(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:/data/mlruns")
    assert reglab.compose(["logger=mlflow"]).logger.mlflow.tracking_uri == "file:/data/mlruns"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert reglab.compose(["logger=mlflow"]).logger.mlflow.tracking_uri == "file:./mlruns"


def test_params_are_the_flat_config(tracked):
    _, run_dir, found, _ = tracked
    params = found.data.params
    config = OmegaConf.load(run_dir / "config.yaml")
    assert params["optimizer.lr"] == str(config.optimizer.lr)
    assert params["model.dropout.hidden"] == "0.2"
    assert params["seed"] == "0"
    assert not any(k.startswith(("logger.", "callbacks.")) for k in params)


def test_the_run_files_are_artifacts_and_the_run_names_its_directory(tracked, tmp_path):
    metrics, run_dir, found, client = tracked
    names = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {n for n in ARTIFACTS if (run_dir / n).is_file()} == names
    assert {"config.yaml", "reliability.png", "predictions.npz", "learning_curve.png"} <= names
    copy = client.download_artifacts(found.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == metrics
    npz = np.load(client.download_artifacts(found.info.run_id, "predictions.npz", str(tmp_path)))
    np.testing.assert_array_equal(npz["probs"], np.load(run_dir / "predictions.npz")["probs"])
    assert found.data.tags["run_dir"] == str(run_dir.resolve())


def test_tensorboard_still_gets_its_event_file(tracked):
    _, run_dir, _, _ = tracked
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_a_relative_store_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("file:./mlruns") == (tmp_path / "mlruns").as_uri()
    assert absolute_uri("file:/abs/mlruns") == "file:/abs/mlruns"
    assert absolute_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_the_log_names_the_mlflow_ui_command_for_each_store(tmp_path):
    local = MLFlowLogger(tracking_uri=f"file:{tmp_path}/mlruns")
    assert ui_commands([local]) == [
        f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri file:{tmp_path}/mlruns"
    ]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("logger.mlflow.tracking_uri=mlruns", "logger.mlflow.tracking_uri"),
        ("logger.mlflow.tracking_uri=ftp://host/x", "logger.mlflow.tracking_uri"),
        ("logger.mlflow.experiment_name=' '", "logger.mlflow.experiment_name"),
    ],
)
def test_bad_tracking_settings_are_one_line_config_errors(override, key):
    cfg = reglab.compose(["logger=mlflow", override])
    with pytest.raises(ConfigError, match=f"^{key}=.* is not allowed \\(allowed: ") as err:
        validate(cfg)
    assert "\n" not in str(err.value)


def test_logger_mlflow_without_the_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"logger=mlflow needs the mlflow package.*\[mlflow\]"):
        validate(reglab.compose(["logger=mlflow"]))


def test_an_experiment_created_by_another_job_at_the_same_moment_is_used(tmp_path, monkeypatch):
    """Jobs of a parallel sweep start on a new store together: one looks the experiment up,
    finds nothing, and another job creates it before this one does. The logger then logs
    into that experiment instead of failing ("Experiment 'reglab' already exists")."""
    from mlflow import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    experiment = MlflowClient(uri).create_experiment("reglab")  # the other job's
    lookup = MlflowClient.get_experiment_by_name
    calls = iter([None])  # the first lookup comes before the other job's creation
    monkeypatch.setattr(
        MlflowClient, "get_experiment_by_name", lambda self, name: next(calls, lookup(self, name))
    )
    logger = MLFlowLogger(tracking_uri=uri, run_dir=str(tmp_path / "run"))
    logger.log_metrics({"val/loss": 0.5}, step=1)
    logger.finalize("success")
    assert logger.experiment_id == experiment
    (run,) = MlflowClient(uri).search_runs([experiment])
    assert run.data.metrics == {"val/loss": 0.5}
