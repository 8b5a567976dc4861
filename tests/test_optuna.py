"""hparams_search=optuna: an Optuna study over the run's hyperparameters (Hydra's Optuna
sweeper), whose failed trials (a NaN loss) are recorded and do not end the study."""

import math

import yaml
from conftest import ROOT, read_metrics, run_cli, run_python

from reglab.records import read_json

TINY = ("debug=fast", "trainer.max_epochs=2", "threads=1", "logger=none")
TINY_CNN = ("model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]")
RANGES = {  # the search space of conf/hparams_search/optuna.yaml
    "regularizer.alpha": (1e-5, 1e-1),
    "optimizer.lr": (1e-4, 1e-1),
    "model.dropout.hidden": (0.0, 0.6),
}


def trials(sweep_dir) -> list:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def overrides(job_dir) -> dict[str, str]:
    lines = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    return dict(line.split("=", 1) for line in lines)


def test_a_tiny_study_runs_its_trials_and_reports_the_best_within_the_search_space(tmp_path):
    """On a tiny cnn: the search space (model.dropout.hidden too) applies to it unchanged."""
    proc = run_cli(
        "hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY, *TINY_CNN,
        f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = trials(tmp_path)
    assert [j.name for j in jobs] == ["0", "1", "2"]
    objectives = [read_metrics(j)["val/best"] for j in jobs]
    for job in jobs:
        assert set(RANGES) <= set(overrides(job))  # each trial drew every searched key
        config = (job / "config.yaml").read_text()
        assert "regularization.L2" in config and "reglab.models.CNN" in config  # alpha is L2's

    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == set(RANGES)
    for key, (low, high) in RANGES.items():
        assert low <= result["best_params"][key] <= high
    assert result["best_value"] == min(objectives)  # val/best, minimized (monitor_mode=min)
    assert (tmp_path / "report.md").exists()


def test_the_direction_follows_monitor_mode():
    proc = run_cli(
        "hparams_search=optuna",
        "monitor=val/acc",
        "monitor_mode=max",
        "--cfg",
        "all",  # `hydra` alone cannot resolve hydra.run.dir's ${resume}
        "--resolve",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "direction: maximize" in proc.stdout and "n_jobs: 1" in proc.stdout


def test_a_trial_whose_loss_becomes_nan_fails_and_the_study_goes_on(tmp_path):
    # SGD at lr=1e6 diverges in the first epoch; with the sampler's seed 0 the third trial draws it
    proc = run_cli(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "optimizer=sgd",
        "optimizer.lr=choice(0.05,1e6)",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = trials(tmp_path)
    assert len(jobs) == 3  # every trial ran
    failed = [j for j in jobs if float(overrides(j)["optimizer.lr"]) == 1e6]
    assert len(failed) == 1
    for job in jobs:
        status = read_json(job / "run.json")["status"]
        assert status == ("failed" if job in failed else "completed")
        assert (job / "metrics.json").exists() == (job not in failed)
    assert "became nan" in read_json(failed[0] / "run.json")["error"]
    assert (
        "Failed experiment: reglab: error: RunFailed: training loss became nan" in proc.stdout
    )  # Optuna: state FAIL

    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert result["best_params"]["optimizer.lr"] == 0.05 and math.isfinite(result["best_value"])
    report = (tmp_path / "report.md").read_text()
    assert "jobs: 3: 2 finished, 1 failed" in report.replace("**", "")
    assert f"job `{failed[0].name}`" in report and "became nan" in report


def test_a_nan_objective_fails_its_trial_instead_of_ending_the_study(tmp_path):
    """The sweeper crashes on a NaN return value; reglab fails such a job instead. (No metric
    reglab computes is NaN after a finite loss, so the second trial's is made NaN here.)"""
    script = tmp_path / "nan_objective.py"
    script.write_text(
        "import math, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from hydra.core.hydra_config import HydraConfig\n"
        "import importlib\n"
        "entry = importlib.import_module('reglab.engine.training')\n"
        "real = entry.train\n"
        "def train(cfg):\n"
        "    metrics = real(cfg)\n"
        "    if HydraConfig.get().job.num == 1:\n"
        "        metrics['val/best'] = math.nan\n"
        "    return metrics\n"
        "entry.train = train\n"
        "importlib.import_module('reglab.cli').main()\n"
    )
    sweep = tmp_path / "sweep"
    args = ("hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY, f"hydra.sweep.dir={sweep}")
    proc = run_python(script, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Failed experiment: reglab: error: RunFailed: val/best is NaN" in proc.stdout
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] in [read_metrics(sweep / j)["val/best"] for j in ("0", "2")]
