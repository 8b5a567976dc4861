"""`python train.py …` end to end, as a user runs it (stdout is a pipe, as in CI and on SLURM).

* every option of every config group (found by scanning conf/, so a new option is covered
  without touching this file) trains, writes its run directory and prints a clean log;
* a `-m` sweep writes one complete run directory per job, with TensorBoard scalars,
  weight histograms and an hparams summary that names the chosen groups;
* the same seed and config give byte-identical metrics.json, another seed other metrics.

Each `python train.py` costs seconds of imports, so the module starts every process once
(two at a time) and the tests below read what they left behind.
"""

import math
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SCALAR_TAGS, read_metrics, run_cli
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from reglab.records import read_json

CONF = ROOT / "conf"
# every config group (a new group, like a new option, is covered without editing this file)
GROUPS = tuple(sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"))
COMMON = ("threads=1",)  # two runs share two cores: no thread oversubscription

SUMMARY_KEYS = {
    "test/loss",
    "val/best",
    "best_step",
    "stopped_step",
    "weights/l1_norm",
    "weights/l2_norm",
    "weights/sparsity",
}
NOISE = (
    "GPU available",
    "TPU available",
    "💡 Tip",
    "LOCAL_RANK",
    "does not have many workers",
    "Traceback",
    "Warning",  # UserWarning, PossibleUserWarning, DeprecationWarning, …
    "warnings.warn",
)


# the tests that read the module's subprocesses (about 40 s in all on 2 cores)
slow = pytest.mark.slow


# options that need files the tests write: the data sets read from files (the publishers', a
# folder, a table) and crop_flip (32×32 crops: CIFAR's images); their own tests run each one
# (tests/test_publishers.py, test_folders_tables.py)
FILE_ONLY = {
    "data": {"mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "image_folder", "table"},
    "augmentation": {"crop_flip"},
}


def options(group: str) -> list[str]:
    names = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    return [n for n in names if n not in FILE_ONLY.get(group, set())]


# -- the runs: every option of every group ---------------------------------------------------
# Groups other than `experiment` are rotated together: run i picks option i mod n of each
# group, so max(n) runs cover every option (and mix them: diabetes with l1, csv with cosine…).
# An experiment selects groups itself, so each runs alone.
# (hparams_search turns a run into a sweep: tests/test_optuna.py; trainer=ddp starts
# processes: tests/test_ddp.py; the model's config chooses its objective: conf/model/)
ROTATED = [g for g in GROUPS if g not in ("experiment", "hparams_search", "trainer", "objective")]
N_ROTATIONS = max(len(options(g)) for g in ROTATED)


IMAGE_AUGMENTATIONS = ("affine", "cutmix", "erasing")
LABEL_MIXING = ("cutmix", "mixup")
IMAGE_MODELS = ("cnn", "resnet", "conv_autoencoder")
MULTITASK_DATA = ("digits_multitask", "synthetic_multitask")


def rotation(i: int) -> list[str]:
    choice = {g: options(g)[i % len(options(g))] for g in ROTATED}
    if choice.get("ensemble") == "bagging" and choice.get("protocol") != "early_stopping":
        choice["ensemble"] = "none"  # bagging runs under Algorithm 7.1 only (a config error)
    if choice.get("ensemble") == "bagging":
        choice["constraint"] = "none"  # a constraint projects one network (a config error)
    if choice.get("augmentation") in IMAGE_AUGMENTATIONS and choice.get("data") != "digits":
        choice["augmentation"] = "noise"  # image transforms need image data (a config error)
    # multi-task data and model go together; an autoencoder classifies (else config errors)
    if choice.get("data") in MULTITASK_DATA:
        choice["model"] = "multitask"
    elif choice.get("model") == "multitask":
        choice["data"] = MULTITASK_DATA[0]
    if choice.get("model") == "autoencoder" and choice.get("data") == "diabetes":
        choice["model"] = "mlp"
    if choice.get("model") in IMAGE_MODELS and choice.get("data") != "digits":
        choice["model"] = "mlp"  # convolutional networks take images (else a config error)
    if choice.get("model") in ("multitask", "autoencoder"):
        choice["ensemble"] = "none"  # bagging votes over networks of one output
    if choice.get("model") in ("multitask", "autoencoder", "conv_autoencoder"):
        # smoothing, mixing and attacks act on one network's labels and loss
        if choice.get("augmentation") in LABEL_MIXING:
            choice["augmentation"] = "noise"
        choice["adversarial"] = "none"
    if choice.get("noise") == "labels" and (
        choice.get("data") not in ("digits", "breast_cancer")
        or choice.get("model") in ("multitask", "autoencoder", "conv_autoencoder")
    ):
        choice["noise"] = "weights"  # label smoothing needs one network's class labels
    if choice.get("ensemble") == "bagging" and (
        choice.get("augmentation") in LABEL_MIXING
        or choice.get("adversarial") != "none"
        or choice.get("representation") != "none"
    ):
        choice["ensemble"] = "none"  # bagging's vmapped members take only noise
    if choice.get("model") == "resnet":
        choice["inference"] = "weight_scaling"  # it has no dropout to sample
    if choice.get("model") == "multitask":
        choice["inference"] = "weight_scaling"  # Monte Carlo averages one distribution
    # the objective follows the network (a mismatch is a config error), as the model's own
    # config chooses it
    objectives = {
        "multitask": "multitask",
        "autoencoder": "semi_supervised",
        "conv_autoencoder": "semi_supervised",
    }
    choice["objective"] = objectives.get(choice.get("model"), "plain")
    extra = ["model.dropout.input=0.2"] if choice.get("inference") == "mc" else []  # needs masks
    if choice.get("model") == "multitask" and choice.get("optimizer") == "sgd":
        extra.append("optimizer.lr=0.005")  # sgd's 0.05 (momentum 0.9) diverges on Σ of 6 losses
    return [f"{g}={o}" for g, o in choice.items()] + extra


CASES: dict[str, list[str]] = {f"rotation{i}": rotation(i) for i in range(N_ROTATIONS)}
CASES |= {  # options the rotation had to replace (e.g. image augmentations on tabular data)
    f"{g}={o}": [f"{g}={o}", "data=digits", "debug=fast"]
    for g in ROTATED
    for o in options(g)
    if g != "data" and not any(f"{g}={o}" in args for args in CASES.values())
}


def first_rotation(group: str, option: str) -> str:
    return next(name for name, args in CASES.items() if f"{group}={option}" in args)


CASES |= {f"experiment={e}": [f"experiment={e}", "debug=fast"] for e in options("experiment")}
CASES["synthetic-regression"] = ["data=synthetic", "data.task=regression", "debug=fast"]
# the rotation never pairs a convolutional net with bagging (nor with Monte Carlo dropout)
CASES["bagging-cnn-mc"] = [
    "model=cnn",
    "ensemble=bagging",
    "ensemble.members=4",
    "model.dropout.channel=0.2",
    "inference=mc",
    "inference.samples=10",
    "debug=fast",
]

OPTION_CASES = [(g, o, first_rotation(g, o)) for g in ROTATED for o in options(g)]
OPTION_CASES += [("experiment", e, f"experiment={e}") for e in options("experiment")]

# on the cnn: sweeps, histograms of every parameter and repeatability hold for convolutions
TINY_CNN = ("model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]")
SWEEP = ("-m", "regularizer=none,l1", "seed=0,1", "debug=fast", "trainer.max_epochs=3", *TINY_CNN)
SWEEP_EPOCHS = 3
# a fresh process with the config of one sweep job (job 2: it ran after two other jobs)
SINGLE = ("regularizer=l1", "seed=0", "debug=fast", "trainer.max_epochs=3", *TINY_CNN)


def _run_all(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess]:
    """Two at a time; `single` in a process started from nothing (its own hash seed, its own
    imports), the others as the fork server's children (conftest.run_cli)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(run_cli, *args, fresh=name == "single")
            for name, args in commands.items()
        }
        return {name: f.result() for name, f in futures.items()}


def case_config(args: list[str]) -> dict:
    """A case's overrides as a config of a `case` group: `# @package _global_`, its group
    choices as `override /group: option` (as an experiment does), its keys as values. The
    objective is left to the model's own config, which chooses it (`rotation` says which)."""
    groups = {g: o for g, o in (a.split("=", 1) for a in args) if g in GROUPS}
    groups.pop("objective", None)
    keys = [a for a in args if a.split("=", 1)[0] not in GROUPS]
    defaults = [{f"override /{g}": o} for g, o in groups.items()] + ["_self_"]
    return {"defaults": defaults, **OmegaConf.to_container(OmegaConf.from_dotlist(keys))}


def write_cases(conf_dir: Path) -> None:
    (conf_dir / "case").mkdir(parents=True)
    for name, args in CASES.items():
        text = "# @package _global_\n" + OmegaConf.to_yaml(OmegaConf.create(case_config(args)))
        (conf_dir / "case" / f"{case_file(name)}.yaml").write_text(text)


def case_file(name: str) -> str:
    return re.sub(r"\W", "_", name)


def split_jobs(proc: subprocess.CompletedProcess, names: list[str]) -> dict:
    """One CompletedProcess per job of a `-m` sweep: its part of the sweep's stdout (Hydra
    prints `#k : overrides` before job k), the sweep's stderr and exit status."""
    parts = re.split(r"^.*\[HYDRA\]\s+#(\d+) : .*$\n", proc.stdout, flags=re.M)
    chunks = dict(zip(parts[1::2], parts[2::2], strict=True))
    return {
        name: subprocess.CompletedProcess(
            proc.args, proc.returncode, chunks.get(str(k), ""), proc.stderr
        )
        for k, name in enumerate(names)
    }


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict:
    """Every process of this module, run once; name → (CompletedProcess, run or sweep dir).

    Each case is a job of one of two `python train.py -m +case=…` sweeps (Hydra's basic
    launcher runs them one after another in that process), so the imports are paid twice,
    not once per case; the `single` run and the `sweep` are processes of their own."""
    base = tmp_path_factory.mktemp("cli")
    write_cases(base / "conf")
    names = list(CASES)
    halves = {"cases0": names[0::2], "cases1": names[1::2]}
    commands = {
        half: [
            "-m",
            f"hydra.searchpath=[file://{base / 'conf'}]",
            f"hydra.sweep.dir={base / half}",
            "+case=" + ",".join(case_file(n) for n in part),
            *COMMON,
        ]
        for half, part in halves.items()
    }
    dirs = {"sweep": base / "sweep", "single": base / "single"}
    commands["sweep"] = [*SWEEP, *COMMON, f"hydra.sweep.dir={dirs['sweep']}"]
    commands["single"] = [*SINGLE, *COMMON, f"hydra.run.dir={dirs['single']}"]
    results = _run_all(commands)
    runs = {name: (results[name], dirs[name]) for name in dirs}
    for half, part in halves.items():
        jobs = split_jobs(results[half], part)
        runs |= {name: (jobs[name], base / half / str(k)) for k, name in enumerate(part)}
    return runs


# -- what every completed run must leave and print -------------------------------------------
def choices(run_dir: Path) -> dict:
    hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")
    return OmegaConf.to_container(hydra_cfg.hydra.runtime.choices)


def check_run_dir(run_dir: Path) -> dict:
    """The files of a completed run; returns its metrics.json."""
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert (run_dir / "run.json").is_file()
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()  # a file, or a link to one

    loggers = set(cfg.get("logger") or {})
    events = list(run_dir.glob("events.out.tfevents.*"))
    assert bool(events) == ("tensorboard" in loggers), (loggers, events)
    assert (run_dir / "metrics.csv").is_file() == ("csv" in loggers), loggers

    metrics = read_metrics(run_dir)
    assert all(isinstance(v, int | float) for v in metrics.values()), metrics  # flat
    if cfg.data.task == "multitask":  # a loss and a metric per task, no single metric
        for name, task in cfg.data.tasks.items():
            metric = "acc" if task.kind == "classification" else "mse"
            assert {f"test/{name}/loss", f"test/{name}/{metric}"} <= set(metrics), metrics
        assert set(metrics) >= SUMMARY_KEYS and "test/acc" not in metrics, sorted(metrics)
        return metrics
    task_key = "test/acc" if cfg.data.task == "classification" else "test/mse"
    other_key = "test/mse" if cfg.data.task == "classification" else "test/acc"
    assert SUMMARY_KEYS | {task_key} <= set(metrics), sorted(metrics)
    assert other_key not in metrics
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert 0 <= metrics["best_step"] <= metrics["stopped_step"]
    assert metrics["stopped_step"] >= 1
    assert 0 <= metrics["weights/sparsity"] <= 1
    if task_key == "test/acc":
        assert 0 <= metrics["test/acc"] <= 1
    return metrics


def check_output(proc: subprocess.CompletedProcess, run_dir: Path, epochs: int | None) -> None:
    """Plain lines for a pipe: one per epoch, then the table, the directory and the TB hint.

    `epochs`: how many epochs the run trains (None: at most trainer.max_epochs, as early
    stopping decides).
    """
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    max_epochs = cfg.trainer.max_epochs
    out = proc.stdout
    assert "\r" not in out + proc.stderr  # no tqdm redraws
    for noise in NOISE:
        assert noise not in out, f"{noise!r} in stdout:\n{out}"
        assert noise not in proc.stderr, f"{noise!r} in stderr:\n{proc.stderr}"
    assert proc.stderr.strip() == "", proc.stderr
    lines = out.splitlines()
    all_epoch_lines = [line for line in lines if line.startswith("epoch ")]
    # a protocol's second phase (7.2, 7.3) trains on, unbounded in epochs ("epoch 3", no "/n")
    epoch_lines = [line for line in all_epoch_lines if "/" in line.split()[1]]
    assert 1 <= len(epoch_lines) <= max_epochs, out
    assert epochs is None or len(epoch_lines) == epochs, out
    assert [line.split()[1] for line in epoch_lines] == [
        f"{k}/{max_epochs}" for k in range(1, len(epoch_lines) + 1)
    ], out
    if cfg.protocol._target_.endswith("EarlyStopping71"):
        assert all_epoch_lines == epoch_lines, out
    assert all(len(line) < 200 for line in all_epoch_lines), all_epoch_lines

    table = lines.index("final metrics:")
    assert lines.index(all_epoch_lines[-1]) < table
    rows = {line.split()[0] for line in lines[table + 1 :] if line.startswith("  ")}
    assert set(read_metrics(run_dir)) <= rows, out
    assert [line for line in lines if line.startswith("run directory:")] == [
        f"run directory: {run_dir}"
    ], out
    assert lines.index(f"run directory: {run_dir}") > table
    if "tensorboard" in (cfg.get("logger") or {}):
        hints = [line for line in lines if "tensorboard --logdir" in line]
        assert len(hints) == 1 and hints[0].endswith(f"tensorboard --logdir {run_dir}"), out
        assert lines.index(hints[0]) > table


# -- A: every option of every group ------------------------------------------------------------
def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"conf/{group}/ has no options"
    assert N_ROTATIONS >= 5  # regularizer alone has five


@slow
@pytest.mark.parametrize(
    ("group", "option", "case"), OPTION_CASES, ids=[f"{g}={o}" for g, o, _ in OPTION_CASES]
)
def test_every_option_trains_from_the_cli(cli, group, option, case):
    proc, run_dir = cli[case]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert choices(run_dir)[group] == option
    check_run_dir(run_dir)
    check_output(proc, run_dir, epochs=None)


@slow
def test_synthetic_regression_reports_mse(cli):
    proc, run_dir = cli["synthetic-regression"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert choices(run_dir)["data"] == "synthetic"
    metrics = check_run_dir(run_dir)
    assert "test/mse" in metrics and "test/acc" not in metrics
    assert "train/mse" in proc.stdout and "train/acc" not in proc.stdout
    check_output(proc, run_dir, epochs=None)


@slow
def test_diabetes_reports_mse(cli):
    """data=diabetes is regression out of the box (test/mse, no accuracy)."""
    proc, run_dir = cli[f"rotation{options('data').index('diabetes')}"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert "test/mse" in metrics and "test/acc" not in metrics


# -- B: a multirun sweep ------------------------------------------------------------------------


def sweep_jobs(sweep_dir: Path) -> dict[tuple[str, int], Path]:
    """(regularizer, seed) → job directory, from each job's own record of its overrides."""
    jobs = {}
    for job in sweep_dir.iterdir():
        if job.is_dir():
            overrides = dict(o.split("=", 1) for o in OmegaConf.load(job / ".hydra/overrides.yaml"))
            jobs[overrides["regularizer"], int(overrides["seed"])] = job
    return jobs


def load_events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


@slow
def test_sweep_writes_one_complete_run_per_job(cli):
    proc, sweep_dir = cli["sweep"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    jobs = sweep_jobs(sweep_dir)
    assert set(jobs) == {("none", 0), ("none", 1), ("l1", 0), ("l1", 1)}
    for (regularizer, _), job in jobs.items():
        assert choices(job)["regularizer"] == regularizer
        check_run_dir(job)
    assert "\r" not in proc.stdout
    assert proc.stdout.count("final metrics:") == 4
    for noise in NOISE:
        assert noise not in proc.stdout + proc.stderr, noise
    assert len([x for x in proc.stdout.splitlines() if x.startswith("epoch ")]) == 4 * SWEEP_EPOCHS


@slow
@pytest.mark.parametrize(
    "job", [("none", 0), ("none", 1), ("l1", 0), ("l1", 1)], ids=lambda j: f"{j[0]}-seed{j[1]}"
)
def test_sweep_job_events_hold_scalars_histograms_and_hparams(cli, job):
    _, sweep_dir = cli["sweep"]
    run_dir = sweep_jobs(sweep_dir)[job]
    metrics = read_metrics(run_dir)
    acc = load_events(run_dir)
    tags = acc.Tags()

    assert set(tags["scalars"]) >= SCALAR_TAGS, sorted(tags["scalars"])
    assert "hp_metric" not in tags["scalars"]
    for key, value in metrics.items():
        last = acc.Scalars(key)[-1].value
        assert last == pytest.approx(value, rel=1e-6, abs=1e-12), key

    # a histogram of every parameter, the last one of the parameters the run ended with
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    params = {k: v for k, v in state.items() if k.startswith("net.")}
    assert params
    for name, tensor in params.items():
        tag = "weights/" + name.replace(".", "/")
        assert tag in tags["histograms"], (tag, tags["histograms"])
        assert acc.Histograms(tag)[-1].histogram_value.num == tensor.numel()

    # the HPARAMS tab: the chosen groups and config values, the final metrics, no hp_metric
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    regularizer, seed = job
    assert hparams["regularizer"].string_value == regularizer
    assert hparams["seed"].number_value == seed
    assert hparams["debug"].string_value == "fast"
    for group in ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger"):
        assert hparams[group].string_value == choices(run_dir)[group], group
    assert "hp_metric" not in hparams
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_names = {m.name.tag for m in experiment.experiment.metric_infos}
    assert "test/acc" in metric_names
    assert set(metrics) <= metric_names
    assert "hp_metric" not in metric_names


@slow
def test_sweep_logs_the_penalty_only_when_regularized(cli):
    _, sweep_dir = cli["sweep"]
    jobs = sweep_jobs(sweep_dir)
    for seed in (0, 1):
        none = [e.value for e in load_events(jobs["none", seed]).Scalars("train/penalty")]
        l1 = [e.value for e in load_events(jobs["l1", seed]).Scalars("train/penalty")]
        assert none and all(v == 0 for v in none)
        assert l1 and all(v > 0 for v in l1)


# -- C: repeatability ----------------------------------------------------------------------------
@slow
def test_cli_same_seed_and_config_gives_identical_metrics(cli):
    """A fresh process and a sweep job (run after two others) with one config agree exactly."""
    proc, run_dir = cli["single"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_run_dir(run_dir)
    check_output(proc, run_dir, epochs=SWEEP_EPOCHS)
    job = sweep_jobs(cli["sweep"][1])["l1", 0]
    assert (run_dir / "metrics.json").read_bytes() == (job / "metrics.json").read_bytes()


@slow
def test_cli_other_seed_gives_other_metrics(cli):
    jobs = sweep_jobs(cli["sweep"][1])
    for regularizer in ("none", "l1"):
        seed0, seed1 = read_metrics(jobs[regularizer, 0]), read_metrics(jobs[regularizer, 1])
        for key in ("test/loss", "val/best", "weights/l2_norm"):
            assert seed0[key] != seed1[key], (regularizer, key)


REPEAT = (
    "debug=fast",
    "data=breast_cancer",
    "trainer.max_epochs=3",
    "trainer.val_check_interval=3",
)


def test_api_same_seed_gives_byte_identical_metrics(train_api):
    first, dir1 = train_api(*REPEAT, "seed=5")
    second, dir2 = train_api(*REPEAT, "seed=5")
    assert first == second
    assert (dir1 / "metrics.json").read_bytes() == (dir2 / "metrics.json").read_bytes()
    best1 = torch.load(dir1 / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    best2 = torch.load(dir2 / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert best1.keys() == best2.keys()
    assert all(torch.equal(best1[k], best2[k]) for k in best1)


def test_api_other_seed_gives_other_metrics(train_api):
    first, _ = train_api(*REPEAT, "seed=5")
    other, _ = train_api(*REPEAT, "seed=6")
    for key in ("test/loss", "val/best", "weights/l1_norm", "weights/l2_norm"):
        assert first[key] != other[key], key
