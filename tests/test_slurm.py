"""The SLURM launcher against a real SLURM: `scripts/slurm_local.sh up` starts a single-node
cluster on localhost (`make test` does it, and stops it afterwards). Where no SLURM answers,
these tests skip; they never start or stop daemons themselves."""

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, read_metrics, run_cli

from reglab.records import read_json

pytestmark = pytest.mark.slurm

# where scripts/slurm_local.sh writes its slurm.conf (clients find the cluster through it)
LOCAL_CONF = Path(os.environ.get("SLURM_LOCAL_DIR", "/tmp/reglab-slurm")) / "slurm.conf"
USABLE = {"idle", "mixed", "allocated", "completing"}  # node states that will run a job
UNFINISHED = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"}  # job states
# what a sweep directory holds besides its job directories
SWEEP_FILES = {".submitit", "multirun.yaml", "report.md", "report.json", "report.png"}


@dataclass
class Slurm:
    partition: str
    cpus: int  # of the partition's first responding node

    def launcher(self, job_name: str, **keys) -> list[str]:
        """`hydra/launcher=slurm` overrides that fit the test cluster: 1 core and 1 GB per task."""
        keys = {
            "partition": self.partition,
            "cpus_per_task": 1,
            "mem_gb": 1,
            "timeout_min": 10,
            "name": job_name,
            **keys,
        }
        return ["hydra/launcher=slurm", *(f"hydra.launcher.{k}={v}" for k, v in keys.items())]


def _sinfo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sinfo", *args], capture_output=True, text=True, timeout=15)


@pytest.fixture(scope="module")
def slurm():
    """A SLURM that answers, with a responding node in a partition; otherwise skip."""
    start = "start one with `scripts/slurm_local.sh up`"
    if shutil.which("sinfo") is None:
        pytest.skip(f"no SLURM: `sinfo` is not installed; {start}")
    with pytest.MonkeyPatch.context() as mp:
        if "SLURM_CONF" not in os.environ and LOCAL_CONF.exists():
            mp.setenv("SLURM_CONF", str(LOCAL_CONF))  # the local cluster; jobs inherit it
        conf = os.environ.get("SLURM_CONF", "the default slurm.conf")
        try:
            proc = _sinfo("--noheader", "--responding", "--format=%P|%T|%c")
        except subprocess.TimeoutExpired:
            pytest.skip(f"no SLURM: sinfo timed out (SLURM_CONF={conf}); {start}")
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"no SLURM reachable (SLURM_CONF={conf}): sinfo: {why}; {start}")
        nodes = [line.split("|") for line in proc.stdout.split() if line.count("|") == 2]
        usable = [(p, int(c)) for p, state, c in nodes if state.rstrip("*~#!%$@^-") in USABLE]
        if not usable:
            pytest.skip(f"SLURM answers (SLURM_CONF={conf}) but no node is up: {proc.stdout!r}")
        # the default partition (sinfo marks it with *) if one of its nodes responds
        partition, cpus = next((u for u in usable if u[0].endswith("*")), usable[0])
        yield Slurm(partition=partition.rstrip("*"), cpus=cpus)


@pytest.fixture
def job_name():
    """A name for this test's SLURM jobs; whatever of them is left when it ends is cancelled."""
    name = f"reglab-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=15)


def slurm_jobs(submitit_dir: Path, wait: float = 30) -> dict[str, str]:
    """SLURM's final state of each job that wrote its logs into `submitit_dir`.

    submitit returns once a job's result is written, a moment before SLURM sees the job end:
    wait up to `wait` seconds for every job to leave the running states.
    """
    ids = {m[1] for p in submitit_dir.iterdir() if (m := re.fullmatch(r"(\d+)(_\d+)?", p.name))}
    assert ids, f"no SLURM job directories in {submitit_dir}"
    deadline = time.monotonic() + wait
    while True:
        proc = subprocess.run(
            ["squeue", "--noheader", "--states=all", "--format=%i %T", f"--jobs={','.join(ids)}"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        assert proc.returncode == 0, proc.stderr
        states = dict(line.split() for line in proc.stdout.splitlines())
        if not set(states.values()) & UNFINISHED or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def submit(slurm, job_name, tmp_path, *args, **resources):
    """`python train.py -m ARGS… hydra/launcher=slurm`, from an empty working directory."""
    sweep, cwd = tmp_path / "sweep", tmp_path / "cwd"
    cwd.mkdir()
    proc = run_cli(
        "-m",
        *args,
        *slurm.launcher(job_name, **resources),
        f"hydra.sweep.dir={sweep}",
        f"hydra.launcher.submitit_folder={sweep}/.submitit/%j",
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep, cwd


def test_sweep_runs_each_job_as_a_slurm_job(slurm, job_name, tmp_path):
    args = ("seed=0,1", "debug=fast", "trainer.max_epochs=2", "threads=1")
    sweep, cwd = submit(slurm, job_name, tmp_path, *args)
    for job in ("0", "1"):
        assert read_json(sweep / job / "run.json")["status"] == "completed"
        assert "test/acc" in read_metrics(sweep / job)
    assert (sweep / "report.md").exists()
    # two array tasks of one SLURM job, both completed (not submitit's local executor)
    states = slurm_jobs(sweep / ".submitit")
    assert sorted(states.values()) == ["COMPLETED", "COMPLETED"], states
    assert not any(cwd.iterdir()), "jobs wrote into the working directory"


def test_ddp_job_runs_as_two_slurm_tasks_and_writes_one_run(slurm, job_name, tmp_path):
    if slurm.cpus < 2:
        pytest.skip(f"the SLURM node has {slurm.cpus} CPU: DDP over 2 tasks needs 2")
    # one SLURM job of 2 tasks (srun starts both); Lightning's SLURM environment makes them
    # the 2 ranks of a DDP process group (gloo on CPU)
    args = ("seed=0", "debug=fast", "threads=1", "trainer=ddp", "trainer.devices=2")
    args += ("trainer.num_nodes=1", "trainer.accelerator=cpu")
    sweep, cwd = submit(slurm, job_name, tmp_path, *args, tasks_per_node=2, nodes=1)
    job = sweep / "0"
    assert read_json(job / "run.json")["status"] == "completed"
    assert "test/acc" in read_metrics(job)
    # both SLURM tasks ran as the 2 ranks of one job, and both finished
    assert list(slurm_jobs(sweep / ".submitit").values()) == ["COMPLETED"]
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2, logs
    for rank, log in enumerate(logs):
        text = log.read_text()
        assert f"global_rank={rank}(2)" in text and "Job completed successfully" in text, text
    # one run's records, written once by rank 0: nothing from rank 1 anywhere else
    assert [p.relative_to(sweep) for p in sweep.rglob("metrics.json")] == [Path("0/metrics.json")]
    assert [p.relative_to(sweep) for p in sweep.rglob("run.json")] == [Path("0/run.json")]
    assert len(list(job.glob("events.out.tfevents.*"))) == 1
    assert {p.name for p in sweep.iterdir()} == SWEEP_FILES | {"0"}
    assert {p.name for p in job.iterdir() if p.is_dir()} <= {".hydra", "checkpoints"}
    assert not any(cwd.iterdir()), "a rank wrote into the working directory"


# -- a time limit that ends mid-run ------------------------------------------------------------
# SLURM sends a job SIGUSR2 `signal_delay_s` before its time limit, at slurmctld's next check
# of time limits (every 30 s). The job starts with a long limit; once it is training, the
# test lowers the limit to 75 s past the job's elapsed time, within the 90 s warning, so the
# signal lands mid-run whatever the imports cost, and the 45 s or more left after it cover the
# checkpoint and submitit's `scontrol requeue` on a loaded machine (with 20 s left, the limit's
# SIGTERM once killed the requeue); the run writes last.ckpt at that step,
# records it, and submitit requeues the job. The test then raises the requeued job's limit
# again, and the second slot ends the run. The training (a 32-unit MLP for 700 epochs, each
# followed by a 60 ms sleep: ~55 s on a quiet core, ~10 s of it CPU) outlasts the wait for the
# signal (at most ~35 s); the sleep (tests/pace.py, a user's callback) keeps the job and the
# uninterrupted run beside it from spending the suite's CPU on waiting for SLURM.
LONG_RUN = ("seed=0", "threads=1", "model.hidden_sizes=[32]", "trainer.max_epochs=700")
LONG_RUN += ("callbacks.early_stopping.patience=100000", "logger=none")
LONG_RUN += ("+callbacks.pace._target_=pace.Pace", "+callbacks.pace.seconds=0.06")
TESTS = str(Path(__file__).parent)  # where the job imports tests/pace.py from
JOB_DIR = r"\d+(_\d+)?"  # submitit's folder of a job, named by its SLURM id


def _seconds(elapsed: str) -> int:
    """squeue's elapsed time ([days-][hours:]minutes:seconds) in seconds."""
    days, _, clock = elapsed.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    return int(days or 0) * 86400 + sum(v * 60**i for i, v in enumerate(reversed(parts)))


def _set_limit(job: str, seconds: int) -> None:
    limit = f"{seconds // 60}:{seconds % 60:02d}"
    proc = subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={limit}"], timeout=15)
    assert proc.returncode == 0


def _limit_mid_run(run_dir: Path, submitit_dir: Path, proc: subprocess.Popen) -> dict:
    """Lower the job's time limit once it trains; return run.json once it says `interrupted`
    (the first slot's end), after raising the requeued job's limit again."""
    lowered = False
    while proc.poll() is None:
        if not lowered and "epoch 20/" in _read(run_dir / "cli.log"):
            job = next(p.name for p in submitit_dir.iterdir() if re.fullmatch(JOB_DIR, p.name))
            elapsed = subprocess.run(
                ["squeue", "--noheader", "--format=%M", f"--jobs={job}"],
                capture_output=True,
                text=True,
                timeout=15,
            )
            _set_limit(job, _seconds(elapsed.stdout.strip()) + 75)
            lowered = True
        status = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
        if status.get("status") == "interrupted":
            _set_limit(job, 15 * 60)
            return status
        time.sleep(0.2)
    return {}


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
def test_a_job_past_its_time_limit_is_requeued_and_ends_as_an_uninterrupted_run(
    slurm, job_name, tmp_path, train_api
):
    sweep, cwd = tmp_path / "sweep", tmp_path / "cwd"
    cwd.mkdir()
    launcher = slurm.launcher(job_name, timeout_min=15, signal_delay_s=90, max_num_timeout=1)
    args = ["-m", *LONG_RUN, *launcher, f"hydra.sweep.dir={sweep}"]
    args.append(f"hydra.launcher.submitit_folder={sweep}/.submitit/%j")
    path = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(  # the sweep's launching process waits for the job, requeues too
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},  # SLURM passes it on to the job
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with ThreadPoolExecutor(1) as pool:  # the uninterrupted run, meanwhile, on the other core
        interruption = pool.submit(_limit_mid_run, sweep / "0", sweep / ".submitit", proc)
        reference, _ = train_api(*LONG_RUN)
        first = interruption.result(timeout=600)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert first.get("status") == "interrupted", "the first slot was not signalled mid-run"
    assert first["signal"] == "SIGUSR2" and first["step"] > 20 * 17, first
    assert read_json(sweep / "0" / "run.json")["status"] == "completed"
    # the second slot continued from the signalled step (not from step 0)
    assert f"resuming from {sweep / '0'}/checkpoints/last.ckpt at step {first['step']}" in _read(
        sweep / "0" / "cli.log"
    )
    # the steps after the signal were not lost, nor any redone differently
    assert read_metrics(sweep / "0") == reference
    assert first["step"] < reference["stopped_step"]
