"""Bad input fails fast and plainly: a non-zero exit and one line naming the key, no traceback.

A value that makes no sense is rejected before training (the rule table of
`reglab.config.validate`, checked in-process below); a run whose loss becomes NaN or
infinite stops with a one-line message, records `status: failed` in run.json and keeps
what it had written: the best checkpoint so far and the event files.
"""

import math
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import reglab
from reglab.config import ConfigError, validate
from reglab.models import ACTIVATIONS
from reglab.records import read_json

# id → (overrides, words the one-line message must contain)
CONFIG_ERRORS: dict[str, tuple[list[str], list[str]]] = {
    "alpha<0": (["regularizer.alpha=-1"], ["regularizer.alpha", "-1", "≥ 0"]),
    "lr=0": (["optimizer.lr=0"], ["optimizer.lr", "> 0"]),
    "lr<0": (["optimizer.lr=-0.1"], ["optimizer.lr", "-0.1", "> 0"]),
    "patience=0": (
        ["callbacks.early_stopping.patience=0"],
        ["callbacks.early_stopping.patience", "≥ 1"],
    ),
    "val+test=1": (
        ["data.val_fraction=0.6", "data.test_fraction=0.4"],
        ["data.val_fraction", "data.test_fraction", "< 1"],
    ),
    "batch_size=0": (["data.batch_size=0"], ["data.batch_size", "≥ 1"]),
    "max_epochs=0": (["trainer.max_epochs=0"], ["trainer.max_epochs", "≥ 1"]),
    "precision=16-mixed": (
        ["trainer.precision=16-mixed"],
        ["trainer.precision", "16-mixed", "32-true or bf16-mixed"],
    ),
    "hidden<0": (["model.hidden_sizes=[64,-3]"], ["model.hidden_sizes", "[64,-3]", "positive"]),
    "hidden=abc": (["model.hidden_sizes=[64,abc]"], ["model.hidden_sizes", "abc", "positive"]),
    # an objective that does not fit the network (any network may be given any objective)
    "multitask-objective-on-mlp": (["objective=multitask"], ["objective=multitask", "tasks"]),
    "semi-objective-on-mlp": (
        ["objective=semi_supervised"],
        ["objective=semi_supervised", "MLP", "model=autoencoder"],
    ),
}

# id → (overrides, whether a validation ran before the loss diverged: then best.ckpt exists)
DIVERGING: dict[str, tuple[list[str], bool]] = {
    # the first chunk of steps already overflows: no validation, no checkpoint yet
    "sgd-lr=1e6": (["optimizer=sgd", "optimizer.lr=1e6", "optimizer.momentum=0"], False),
    # (1 − εα) = −99 per step: ‖w‖² overflows by step 5, after validations at steps 2 and 4
    "l2-blowup": (
        [
            "debug=fast",
            "regularizer=l2",
            "regularizer.alpha=1000",
            "optimizer=sgd",
            "optimizer.lr=0.1",
            "optimizer.momentum=0",
            "trainer.val_check_interval=2",
            "callbacks.early_stopping.patience=100",
        ],
        True,
    ),
    # the weights overflow within one step: the validation loss is NaN before any training
    # loss is; a NaN validation loss is a diverged run too, not a finished one
    "val-loss-nan": (
        [
            "debug=fast",
            "optimizer=sgd",
            "optimizer.lr=10",
            "optimizer.momentum=0.9",
            "trainer.val_check_interval=1",
        ],
        True,
    ),
}

UNKNOWN_OPTION = ["regularizer=foo"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every bad command of this module, run once (two at a time): id → (process, run dir)."""
    base = tmp_path_factory.mktemp("bad")
    commands = {name: overrides for name, (overrides, _) in CONFIG_ERRORS.items()}
    commands |= {name: overrides for name, (overrides, _) in DIVERGING.items()}
    commands["unknown-option"] = UNKNOWN_OPTION
    dirs = {name: base / re.sub(r"\W", "_", name) for name in commands}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(run_cli, *args, "threads=1", f"hydra.run.dir={dirs[name]}")
            for name, args in commands.items()
        }
        return {name: (f.result(), dirs[name]) for name, f in futures.items()}


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed run (asserting that there is just one)."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream, stream
        assert "Warning" not in stream, stream
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- values outside their range: in a subprocess, as a user meets them ------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIG_ERRORS))
def test_bad_value_exits_with_one_line_naming_key_and_allowed_values(runs, name):
    proc, _ = runs[name]
    _, words = CONFIG_ERRORS[name]
    message = one_line_error(proc)
    assert "allowed" in message, message
    for word in words:
        assert word in message, (word, message)
    assert "epoch " not in proc.stdout  # rejected before training


@pytest.mark.slow
def test_unknown_option_lists_the_available_ones(runs):
    proc, _ = runs["unknown-option"]
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "regularizer/foo" in proc.stderr
    for option in ("elastic_net", "l1", "l2", "none", "weight_decay"):
        assert re.search(rf"^\s+{option}$", proc.stderr, flags=re.M), proc.stderr


# -- a loss that becomes NaN or infinite ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", list(DIVERGING))
def test_diverging_run_fails_and_keeps_its_records(runs, name):
    proc, run_dir = runs[name]
    _, validated = DIVERGING[name]
    message = one_line_error(proc)
    assert re.search(r"\b(nan|inf)\b", message), message
    assert str(run_dir) in message  # where the kept checkpoint and logs are

    record = read_json(run_dir / "run.json")
    assert record["status"] == "failed", record
    assert re.search(r"\b(nan|inf)\b", record["error"]), record

    events = list(run_dir.glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()  # readable, not truncated
    if not validated:
        return
    assert "val/loss" in acc.Tags()["scalars"]
    assert any(math.isfinite(e.value) for e in acc.Scalars("val/loss"))

    best = run_dir / "checkpoints" / "best.ckpt"
    assert best.is_file()
    checkpoint = torch.load(best, weights_only=False)
    weights = checkpoint["state_dict"]
    assert weights
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert checkpoint["global_step"] >= 1


# -- the whole rule table, in-process ---------------------------------------------------------
REJECTED = [
    ["regularizer.alpha=-1"],
    ["regularizer.alpha=-0.001"],
    ["regularizer.alpha=nan"],
    ["regularizer.alpha=abc"],
    ["regularizer=elastic_net", "regularizer.l1_ratio=1.5"],
    ["regularizer=elastic_net", "regularizer.l1_ratio=-0.1"],
    ["optimizer.lr=0"],
    ["optimizer.lr=-0.1"],
    ["optimizer.lr=nan"],
    ["optimizer=sgd", "optimizer.lr=0"],
    ["data.batch_size=0"],
    ["data.batch_size=-5"],
    ["data.batch_size=1.5"],
    ["data.batch_size=true"],
    ["data.val_fraction=1"],
    ["data.val_fraction=-0.1"],
    ["data.test_fraction=1.5"],
    ["data.val_fraction=0.6", "data.test_fraction=0.4"],
    ["data.val_fraction=0.5", "data.test_fraction=0.5"],
    ["trainer.max_epochs=0"],
    ["trainer.max_epochs=2.5"],
    ["trainer.val_check_interval=0"],
    ["trainer.val_check_interval=-1"],
    ["trainer.val_check_interval=0.0"],
    ["trainer.val_check_interval=1.5"],
    ["trainer.precision=16-mixed"],
    ["trainer.precision=bf16"],
    ["trainer.precision=32"],
    ["trainer.channels_last=yes"],
    ["trainer.compile=1"],
    ["callbacks.early_stopping.patience=0"],
    ["callbacks.early_stopping.patience=-2"],
    ["callbacks.early_stopping.patience=1.5"],
    ["callbacks.early_stopping.mode=maximum"],
    ["model.hidden_sizes=[64,-3]"],
    ["model.hidden_sizes=[64,abc]"],
    ["model.hidden_sizes=[64,0]"],
    ["model.hidden_sizes=64"],
    ["model.activation=swish"],
    ["seed=abc"],
    ["seed=1.5"],
    # seeds outside numpy's [0, 2³²−1] reach Lightning's seed_everything, which raises a
    # ValueError (a traceback at the CLI) instead of a one-line message
    ["seed=-1"],
    ["seed=4294967296"],
    # eval_batch_size=0 divides by zero while loading; every_n_epochs=0 takes a modulo by
    # zero at the first epoch's end (tracebacks)
    ["data.eval_batch_size=0"],
    ["callbacks.weight_histograms.every_n_epochs=0"],
    # any task other than classification silently trains a regression
    ["data.task=foo"],
    # semi-supervised and multi-task learning
    ["data.labeled_fraction=0"],
    ["data.labeled_fraction=1.5"],
    ["data.labeled_fraction=-0.1"],
    ["model=autoencoder", "model.recon_weight=-1"],
    ["model=autoencoder", "model.code_size=0"],
    ["model=autoencoder", "model.recon_units=pixels"],
    ["model=autoencoder", "data=diabetes"],
    ["model=multitask", "data=digits_multitask", "data.tasks=null"],
    ["model=multitask", "data=digits_multitask", "data.tasks.parity.kind=ranking"],
    ["model=multitask", "data=digits_multitask", "data.tasks.parity.weight=-1"],
    ["model=multitask", "data=digits_multitask", "data.tasks.parity.outputs=1"],
    ["model=multitask", "data=digits_multitask", "data.use_tasks=[colour]"],
    ["model=multitask", "data=digits_multitask", "model.shared_size=0"],
    ["model=multitask", "data=digits_multitask", "model.trunk.hidden_sizes=[64,0]"],
    ["model=conv_autoencoder", "model.encoder.channels=[]"],
    ["model=conv_autoencoder", "model.decoder.activation=swish"],
    ["model=multitask", "data=digits_multitask", "objective=plain"],
    ["model=multitask", "data=digits"],
    ["model=mlp", "data=digits_multitask"],
    ["model=multitask", "data=digits_multitask", "ensemble=bagging"],
    ["model=multitask", "data=digits_multitask", "inference=mc"],
    # noise, sparse representations, adversarial training, label mixing
    ["noise=weights", "noise.std=-0.1"],
    ["noise=labels", "noise.smoothing=1"],
    ["noise=labels", "noise.smoothing=-0.1"],
    ["noise=labels", "data=diabetes"],
    ["noise=labels", "model=autoencoder"],
    ["representation=l1", "representation.alpha=-1"],
    ["representation=l1", "representation.layers=ReLU"],
    ["adversarial=fgsm", "adversarial.epsilon=-1"],
    ["adversarial=pgd", "adversarial.steps=0"],
    ["adversarial=pgd", "adversarial.steps=2.5"],
    ["adversarial=pgd", "adversarial.step_size=0"],
    ["adversarial=fgsm", "adversarial.weight=1.5"],
    ["adversarial.evaluate=cw"],
    ["adversarial=fgsm", "model=multitask", "data=digits_multitask"],
    ["augmentation=cutmix", "data=diabetes"],
    ["augmentation=mixup", "augmentation.transforms.mixup.alpha=0"],
    ["augmentation=mixup", "ensemble=bagging"],
    ["representation=l1", "ensemble=bagging"],
]

ACCEPTED = [
    [],
    ["regularizer.alpha=0"],
    ["regularizer=elastic_net", "regularizer.l1_ratio=0"],
    ["regularizer=elastic_net", "regularizer.l1_ratio=1"],
    ["optimizer.lr=1e-8"],
    ["data.batch_size=1"],
    ["data.batch_size=100000"],
    ["data.val_fraction=0", "data.test_fraction=0"],
    ["data.val_fraction=0.5", "data.test_fraction=0.49"],
    ["trainer.max_epochs=1"],
    ["trainer.val_check_interval=null"],
    ["trainer.val_check_interval=1"],
    ["trainer.val_check_interval=1.0"],
    ["trainer.val_check_interval=0.25"],
    ["trainer.val_check_interval=7"],
    ["trainer.precision=bf16-mixed", "trainer.channels_last=true", "trainer.compile=true"],
    ["callbacks.early_stopping.patience=1"],
    ["callbacks.early_stopping.mode=max"],
    ["model.hidden_sizes=[]"],
    ["model.hidden_sizes=[3]"],
    ["model=linear"],
    ["seed=0"],
    ["seed=4294967295"],
    ["data.eval_batch_size=1"],
    ["data=diabetes"],
    ["data=synthetic", "data.task=regression"],
    ["callbacks.weight_histograms.every_n_epochs=1"],
    *[[f"model.activation={a}"] for a in ACTIVATIONS],
    ["callbacks.early_stopping=null"],
    ["data.labeled_fraction=1"],
    ["data.labeled_fraction=0.01"],
    ["model=autoencoder", "model.recon_weight=0"],
    *[["model=autoencoder", f"model.recon_units={u}"] for u in ("raw", "standardized")],
    ["model=multitask", "data=synthetic_multitask", "data.use_tasks=[t4]"],
    ["model=multitask", "data=digits_multitask", "data.tasks.parity.weight=0"],
    ["model=multitask", "data=digits_multitask", "model/trunk=cnn"],
    ["model=conv_autoencoder", "model.activation=tanh"],
    *[[f"experiment={p.stem}"] for p in sorted(reglab.config.CONFIG_DIR.glob("experiment/*.yaml"))],
    ["noise=weights", "noise.std=0"],
    ["noise=labels", "noise.smoothing=0"],
    ["noise=labels", "ensemble=bagging"],
    ["representation=l1", "representation.layers=[features.*,ReLU]"],
    ["representation=l1", "model=autoencoder"],
    ["adversarial=fgsm", "adversarial.epsilon=0"],
    ["adversarial=pgd", "adversarial.steps=1"],
    ["adversarial.evaluate=[fgsm,pgd]"],
    ["augmentation=mixup", "data=diabetes"],
    ["augmentation=[affine,cutmix]"],
]


def _id(overrides: list[str]) -> str:
    return " ".join(overrides) or "defaults"


@pytest.mark.parametrize("overrides", REJECTED, ids=_id)
def test_validate_rejects_with_a_one_line_message(overrides):
    cfg = reglab.compose(overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "allowed" in message
    keys = [o.split("=")[0] for o in overrides if "." in o.split("=")[0] or o.startswith("seed")]
    keys = keys or [o.split("=")[0] for o in overrides]  # group choices that don't fit together
    assert any(key in message for key in keys), (keys, message)


@pytest.mark.parametrize("overrides", ACCEPTED, ids=_id)
def test_validate_accepts_sensible_values(overrides):
    validate(reglab.compose(overrides))


def test_train_validates_before_touching_the_run_directory(tmp_path):
    """reglab.train rejects a bad config before it creates the run directory or trains."""
    run_dir = tmp_path / "run"
    cfg = reglab.compose(["optimizer.lr=0", "debug=fast"], output_dir=run_dir)
    with pytest.raises(ConfigError, match=r"optimizer\.lr"):
        reglab.train(cfg)
    assert not run_dir.exists()
