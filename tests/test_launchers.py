"""Hydra launchers: joblib runs a sweep's jobs in parallel processes without oversubscribing
the cores, and gives each job exactly what the basic launcher gives it."""

import os

from conftest import read_metrics, run_cli

from reglab.records import read_json

SWEEP = ("-m", "seed=0,1", "debug=fast", "trainer.max_epochs=2")


def test_joblib_sweep_runs_every_job_with_cores_shared_between_them(tmp_path):
    parallel, serial = tmp_path / "joblib", tmp_path / "basic"
    proc = run_cli(
        *SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={parallel}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    cores = os.cpu_count()
    for job in ("0", "1"):
        run = read_json(parallel / job / "run.json")
        assert run["status"] == "completed"
        assert run["threads"] >= 1 and 2 * run["threads"] <= max(cores, 2)  # jobs × threads ≤ cores
    assert (parallel / "report.md").exists()
    # the same jobs through the basic launcher, at the joblib jobs' thread count: same metrics
    threads = read_json(parallel / "0" / "run.json")["threads"]
    proc = run_cli(*SWEEP, f"threads={threads}", f"hydra.sweep.dir={serial}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job in ("0", "1"):
        assert read_metrics(parallel / job) == read_metrics(serial / job)
