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


def test_a_failed_joblib_job_has_its_error_in_its_directory_and_the_report(tmp_path):
    """Under joblib the job runs in a worker process: the report's callback never sees its
    error, which the job therefore records itself (run.json, its log). The sweep ends with
    the error in one line (Hydra prints a traceback for any but a compact exception)."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "optimizer.lr=-1", "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0
    run = read_json(sweep / "0" / "run.json")
    assert run["status"] == "failed" and run["error"].startswith("ConfigError: optimizer.lr")
    assert "ConfigError: optimizer.lr" in (sweep / "0" / "cli.log").read_text()
    out = proc.stdout + proc.stderr  # the report's line: no report of a sweep of no finished job
    assert "no finished jobs" in out and "first error: ConfigError: optimizer.lr" in out
    # and the sweep's own exit prints the job's error in one line, not a traceback
    assert "reglab: error: ConfigError: optimizer.lr=-1 is not allowed" in proc.stderr
    assert "Traceback" not in out


def test_submitit_local_runs_the_same_jobs_end_to_end(tmp_path):
    """The SLURM launcher's code path (submitit), runnable without SLURM."""
    proc = run_cli(
        *SWEEP, "threads=1", "hydra/launcher=submitit_local", f"hydra.sweep.dir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job in ("0", "1"):
        assert read_json(tmp_path / job / "run.json")["status"] == "completed"
        assert set(read_metrics(tmp_path / job)) >= {"test/acc", "best_step"}
    assert (tmp_path / "report.md").exists()


def test_slurm_launcher_config_composes_with_its_commented_keys():
    proc = run_cli("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra")
    assert proc.returncode == 0, proc.stderr[-2000:]
    launcher = proc.stdout.split("  launcher:", 1)[1]
    assert "SlurmLauncher" in launcher and "partition: gpu" in launcher
    assert "max_num_timeout: 3" in launcher and "setup: []" in launcher


def test_a_requeued_slurm_job_continues_from_its_checkpoint(tmp_path, monkeypatch):
    """submitit starts a preempted job again in the same directory: it resumes, not restarts."""
    import reglab

    args = ["trainer.max_epochs=3", "callbacks.progress_bar=null", "logger=none"]
    first = reglab.train(reglab.compose(args, output_dir=tmp_path))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    cfg = reglab.compose([*args, "trainer.max_epochs=5"], output_dir=tmp_path)
    from reglab.engine.run import build

    run = build(cfg)
    assert run.ckpt_path == tmp_path / "checkpoints" / "last.ckpt"
    assert run.cfg.trainer.max_epochs == 3  # the run's own config, not the new command line
    assert first["stopped_step"] == 3 * run.dm.steps_per_epoch
