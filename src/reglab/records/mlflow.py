"""MLflow tracking (`logger=mlflow`, the `mlflow` extra): a run's params, metrics and files.

Lightning's MLFlowLogger receives what every logger does: each `publish`ed scalar at its
step (train/, val/ and test/ metrics), the final metrics and, for MLflow only, the flat
config as params (`records.log_final`, `records.flat_hparams`). At the end of the run the files
the run directory holds are uploaded as the MLflow run's artifacts (`log_run_files`).

The default store is MLflow's local file store, `file:./mlruns` under the directory
`train.py` starts in: no server needed. MLflow ≥ 3.7 refuses that store unless
`MLFLOW_ALLOW_FILE_STORE` is set; the logger sets it (when unset) for `file:` URIs only. Any
other tracking URI (`sqlite:///mlflow.db`, `http://host:5000`) is MLflow's to handle.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

# the run directory's files an MLflow run carries, when the run wrote them
ARTIFACTS = (
    "config.yaml",
    "metrics.json",
    "run.json",
    "learning_curve.png",
    "reliability.png",
    "predictions.npz",
    "classes.json",
)


def absolute_uri(uri: str) -> str:
    """A relative `file:` URI made absolute (MLflow records artifact locations as given, and
    `mlflow ui` started elsewhere would look for them there); others unchanged."""
    if not uri.startswith("file:") or uri.startswith("file:/"):
        return uri
    return Path(uri[len("file:") :]).resolve().as_uri()


class MLFlowLogger(pl.loggers.MLFlowLogger):
    """Lightning's MLFlowLogger on a local file store by default, the run named after and
    tagged with its run directory (`run_dir`) so the two can be found from each other."""

    def __init__(
        self,
        tracking_uri: str = "file:./mlruns",
        experiment_name: str = "reglab",
        run_dir: str | None = None,
        run_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        uri = absolute_uri(str(tracking_uri))
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tags = {"run_dir": str(Path(run_dir).resolve())} if run_dir else None
        name = run_name or (_relative(Path(run_dir)) if run_dir else None)
        super().__init__(
            experiment_name=experiment_name, run_name=name, tracking_uri=uri, tags=tags, **kwargs
        )
        self.tracking_uri = uri
        self._experiment_exists = False

    @property
    def experiment(self) -> Any:
        # Lightning calls mlflow.set_tracking_uri here, which also writes the store into
        # os.environ["MLFLOW_TRACKING_URI"]: every config composed later in this process (a
        # Python sweep, the next job of a `-m` sweep) would default to this run's store
        before = os.environ.get("MLFLOW_TRACKING_URI")
        try:
            self._create_experiment()
            return super().experiment
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before

    def _create_experiment(self) -> None:
        """Create the experiment unless it exists, also when another process creates it at
        the same moment: the jobs of a parallel sweep (joblib, SLURM) starting on a new
        store. Lightning's logger would look it up, find nothing, and fail on creating it
        ("Experiment 'reglab' already exists"), ending that job."""
        if self._experiment_exists or self._run_id is not None:
            return
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        client = MlflowClient(self.tracking_uri)
        if client.get_experiment_by_name(self._experiment_name) is None:
            try:
                client.create_experiment(self._experiment_name, self._artifact_location)
            except MlflowException as err:
                if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                    raise
        self._experiment_exists = True

    def log_hyperparams(self, params: Any) -> None:
        # the file store keeps a param as a file named by its key, so the chosen option of
        # a nested group (`model/trunk`) would need `model`, another param, as a directory
        flat = params if isinstance(params, dict) else vars(params)
        super().log_hyperparams({str(k).replace("/", "."): v for k, v in flat.items()})


def ui_commands(loggers: Sequence[pl.loggers.Logger]) -> list[str]:
    """The `mlflow ui` command that shows each MLflow logger's store (the full mlflow package:
    mlflow-skinny has no server)."""
    stores = [lg.tracking_uri for lg in loggers if isinstance(lg, MLFlowLogger)]
    return [
        f"{'MLFLOW_ALLOW_FILE_STORE=true ' if uri.startswith('file:') else ''}mlflow ui"
        f" --backend-store-uri {uri}"
        for uri in stores
    ]


def _relative(path: Path) -> str:
    """The path from the working directory when it lies below it (outputs/…), else as is."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def log_run_files(loggers: Sequence[pl.loggers.Logger], run_dir: Path) -> None:
    """Upload the run directory's `ARTIFACTS` to each MLflow run."""
    for logger in loggers:
        if isinstance(logger, pl.loggers.MLFlowLogger):
            for name in ARTIFACTS:
                if (run_dir / name).is_file():
                    logger.experiment.log_artifact(logger.run_id, str(run_dir / name))
