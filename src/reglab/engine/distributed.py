"""One run over several processes (`trainer=ddp`): Lightning's DDPStrategy, processes started here.

Lightning's DDPStrategy trains: torch's DistributedDataParallel all-reduces the gradients of
every backward pass to their mean over the processes. Lightning's `manual_backward` prepares
DDP's reducer before each one, so all k optimizer steps of a chunk (objectives/base.py) are
synchronized; a plain `loss.backward()` after the first would not be. Each process trains on
its part of every global minibatch (`data.ChunkLoader`), so the run takes the steps of a
single-process run on the same minibatches, to float rounding. That holds for a loss that
is the mean over a minibatch's rows; one divided by a count that varies between the parts
(labelled rows, present targets) is averaged per part instead, close but not equal. The
`train/*` scalars are rank 0's part's. Validation and test are not split: every process
evaluates the whole set, and torchmetrics' sync at `compute()` sums the processes'
identical states, numerator and denominator alike, which leaves the metrics unchanged.

What this module adds:

- `launch`: starting the processes on one machine, like torchrun. This process becomes rank
  0 and `trainer.devices - 1` more run the same resolved config (`worker`). Lightning's own
  launcher would instead run the command line again, which from Python (`reglab.train`)
  or in a Hydra sweep (`-m`, whose command line starts the whole sweep) starts the wrong
  thing, and its `ddp_spawn` leaves what the module learned (history, test results) in the
  worker processes. Under SLURM, srun (through submitit) starts one process per task and
  Lightning's SLURMEnvironment reads their ranks: nothing to start here.
- `world_size`, and `check`: the settings that cannot work, as a ConfigError.
- `RankSeeds`: a random stream per process (dropout masks, augmentations).

Only global rank 0 writes the run's files (run.build, training.train); Lightning writes
checkpoints and event files from rank 0 alone.
"""

import copy
import importlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from omegaconf import DictConfig, OmegaConf, open_dict

from reglab.config import ConfigError, RunFailed, resume_config, validate

log = logging.getLogger("reglab")

T = TypeVar("T")

CONFIG_ENV = "REGLAB_DDP_CONFIG"  # how `launch` hands the resolved config to the other ranks
WORKER = "import reglab.engine.distributed as d; d.worker({target!r})"
GRACE_S = 15.0  # after a rank failed: time for this one to fail too before it is stopped
# strategy names that keep the trained module in this process (see the module docstring)
DDP_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")


def _strategy(trainer: Mapping[str, Any]) -> str:
    """The strategy's name; "ddp" for a DDPStrategy object that keeps Lightning's default
    start method (a strategy given as {_target_: …DDPStrategy, …})."""
    strategy = trainer.get("strategy") or "auto"
    if isinstance(strategy, Mapping):
        target = str(strategy.get("_target_", ""))
        popen = strategy.get("start_method", "popen") == "popen"
        return "ddp" if target.endswith(".DDPStrategy") and popen else target
    return str(strategy)


def _processes(trainer: Mapping[str, Any]) -> int | None:
    """trainer.devices × trainer.num_nodes, if both are integers."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (devices, nodes))
    return devices * nodes if ints else None


def is_ddp(cfg: DictConfig) -> bool:
    """Whether the run trains under DDP: trainer=ddp, or Lightning's "auto" strategy with
    more than one process (Lightning picks DDP then)."""
    strategy = _strategy(cfg.trainer)
    processes = _processes(cfg.trainer) or 1
    return strategy in DDP_STRATEGIES or (strategy == "auto" and processes > 1)


def world_size(cfg: DictConfig) -> int:
    """Processes the run trains in: trainer.devices × trainer.num_nodes under DDP, else 1."""
    return max(_processes(cfg.trainer) or 1, 1) if is_ddp(cfg) else 1


def externally_started() -> bool:
    """Whether a launcher started this process as one of the run's ranks (SLURM's srun,
    torchrun, or `launch`, which sets LOCAL_RANK like torchrun)."""
    return (
        "LOCAL_RANK" in os.environ or SLURMEnvironment.detect() or TorchElasticEnvironment.detect()
    )


def check(cfg: DictConfig) -> None:
    """ConfigError for multi-process settings that cannot work."""
    trainer = cfg.trainer
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    strategy = _strategy(trainer)
    if not is_ddp(cfg):
        if strategy.startswith("ddp") and (_processes(trainer) or 2) > 1:
            raise ConfigError(
                f"trainer.strategy={strategy} is not allowed: its worker processes keep what"
                " the run learned (allowed: trainer=ddp, which starts its processes itself)"
            )
        return
    if not (isinstance(devices, int) and devices >= 1):
        raise ConfigError(
            f"trainer.devices={devices} is not allowed with trainer=ddp (allowed: an integer"
            " ≥ 1, the processes per node)"
        )
    if not (isinstance(nodes, int) and nodes >= 1):
        raise ConfigError(f"trainer.num_nodes={nodes} is not allowed (allowed: an integer ≥ 1)")
    if externally_started():
        return
    if nodes > 1:
        raise ConfigError(
            f"trainer.num_nodes={nodes}: processes on other machines need a launcher that"
            " starts them (allowed: hydra/launcher=slurm with hydra.launcher.nodes="
            f"{nodes}, or torchrun; trainer.num_nodes=1 on one machine)"
        )
    tasks = int(os.environ.get("SUBMITIT_LOCAL_NTASKS", "1"))
    if tasks > 1:
        raise ConfigError(
            f"hydra.launcher.tasks_per_node={tasks} under submitit_local would start"
            f" {tasks} copies of the DDP run (allowed: tasks_per_node=1: trainer=ddp starts"
            " trainer.devices processes itself)"
        )


def _run_config(cfg: DictConfig) -> DictConfig:
    """The config the run trains with: with `resume=`, the resumed run's own (run.build)."""
    return resume_config(cfg) if cfg.get("resume") else cfg


def needs_launch(cfg: DictConfig) -> bool:
    """Whether this process is to start the run's other processes (`launch`): DDP on this
    machine, with no scheduler starting them. Raises ConfigError (`check`)."""
    cfg = _run_config(cfg)
    check(cfg)
    if not is_ddp(cfg) or externally_started():
        return False
    validate(cfg)  # a bad value stops the run here, before other processes start
    return True


def job_threads(cfg: DictConfig) -> int | None:
    """torch threads for this job: `threads` if set; under a launcher that runs jobs in
    parallel processes (joblib), the cores divided among them, so jobs × threads ≤ cores."""
    if cfg.get("threads"):
        return cfg.threads
    if not HydraConfig.initialized():
        return None
    n_jobs = (HydraConfig.get().launcher or {}).get("n_jobs")
    if not n_jobs:
        return None
    cores = os.cpu_count() or 1
    jobs = cores if n_jobs < 0 else min(n_jobs, cores)  # joblib: -1 = one job per core
    return max(1, cores // jobs)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def launch(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """`fn(cfg)` as rank 0 of a DDP run on this machine, beside trainer.devices - 1 processes
    that run it too (ranks 1…), started here with the ranks in their environment as torchrun
    sets them. Every process takes `threads` torch threads (default: the cores divided
    among them). Returns rank 0's result; leaves the environment as it found it."""
    processes = _run_config(cfg).trainer.devices
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.threads = cfg.get("threads") or max(1, (job_threads(cfg) or _cores()) // processes)
    shared = {
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": str(find_free_network_port()),
        "WORLD_SIZE": str(processes),
        "NODE_RANK": "0",
        "OMP_NUM_THREADS": str(cfg.threads),  # Lightning then leaves torch's threads alone
    }

    def rank_env(rank: int) -> dict[str, str]:
        return {**shared, "LOCAL_RANK": str(rank), "RANK": str(rank)}

    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    worker = WORKER.format(target=f"{fn.__module__}:{fn.__qualname__}")
    children = [
        subprocess.Popen(
            [sys.executable, "-c", worker],
            env={**os.environ, **rank_env(rank), CONFIG_ENV: resolved},
        )
        for rank in range(1, processes)
    ]
    watch = _Watch(children)
    saved = {key: os.environ.get(key) for key in rank_env(0)}
    threads = torch.get_num_threads()
    os.environ.update(rank_env(0))
    torch.set_num_threads(cfg.threads)
    try:
        result = fn(cfg)
    except BaseException:
        watch.stop()
        for child in children:
            child.kill()  # they may wait in a collective for this process forever
        raise
    finally:
        watch.stop()
        for child in children:
            _wait(child)
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # the next run makes its own
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
    return result


def _wait(child: subprocess.Popen, timeout: float = 60.0) -> None:
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("DDP rank process %d did not end after the run; stopping it", child.pid)
        child.kill()
        child.wait()


class _Watch(threading.Thread):
    """Ends this process if another rank died and this one did not fail by itself within
    GRACE_S seconds: it would otherwise wait in a collective for that rank (NCCL waits for
    its timeout, 30 minutes)."""

    def __init__(self, children: list[subprocess.Popen]) -> None:
        super().__init__(daemon=True, name="reglab-ddp-watch")
        self.children = children
        self.stopped = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            failed = [c for c in self.children if c.poll() not in (None, 0)]
            if failed and not self.stopped.wait(GRACE_S):
                code = failed[0].returncode
                log.error("reglab: error: a DDP rank process exited with %s; stopping", code)
                for child in self.children:
                    child.kill()
                os._exit(1)

    def stop(self) -> None:
        self.stopped.set()


def worker(target: str) -> None:
    """Ranks 1… of `launch`: the same function ("module:name", as rank 0 named it) on the
    resolved config rank 0 handed over."""
    module, name = target.split(":")
    fn = getattr(importlib.import_module(module), name)
    cfg = OmegaConf.create(os.environ.pop(CONFIG_ENV))
    try:
        fn(cfg)
    except (ConfigError, RunFailed):
        sys.exit(1)  # rank 0 meets the same error and reports it


class RankSeeds(pl.Callback):
    """A random stream per process: Lightning seeds every rank alike when training starts,
    so rank r > 0 reseeds with (seed, r), and the parts of a minibatch draw independent
    dropout masks and augmentations (rank 0 keeps the run's stream)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank > 0:
            state = np.random.SeedSequence([self.seed, trainer.global_rank]).generate_state(1)
            torch.manual_seed(int(state[0]))
