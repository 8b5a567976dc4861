"""Algorithm 7.1: validate every n steps, stop after p validations without improvement,
end holding θ* (the best parameters) with i* (the best step) recorded."""

import itertools

import pytest
import torch

from reglab.config import compose
from reglab.engine.run import build

# digits with a small training set and a large learning rate: the validation loss reaches
# its minimum within a few epochs and then rises (the slide's learning curve)
OVERFIT = [
    "data.val_fraction=0.4",
    "data.test_fraction=0.2",
    "optimizer.lr=0.01",
    "trainer.max_epochs=200",
    "callbacks.early_stopping.patience=4",
    "callbacks.progress_bar=null",
]


def fit(tmp_path, *overrides):
    run = build(compose([*OVERFIT, *overrides], output_dir=tmp_path))
    history = []  # (step, val/loss) of every validation, as the trainer saw it

    def record(trainer, pl_module):
        history.append((trainer.global_step, float(trainer.callback_metrics["val/loss"])))

    stopper = next(c for c in run.trainer.callbacks if type(c).__name__ == "EarlyStopping")
    original = stopper.on_validation_end

    def on_validation_end(trainer, pl_module):
        record(trainer, pl_module)
        original(trainer, pl_module)

    stopper.on_validation_end = on_validation_end
    run.trainer.fit(run.module, datamodule=run.dm)
    return run, stopper, history


def state(module):
    return {k: v.clone() for k, v in module.net.state_dict().items()}


def test_stops_after_patience_and_restores_best(tmp_path):
    run, stopper, history = fit(tmp_path)
    steps, losses = zip(*history, strict=True)
    n = run.dm.steps_per_epoch  # default: validate once per epoch
    assert all(b - a == n for a, b in itertools.pairwise(steps))  # every n steps

    best = min(range(len(losses)), key=losses.__getitem__)  # first minimum = strict improvement
    assert stopper.best_step == steps[best]  # i*
    assert stopper.best_value == pytest.approx(losses[best])
    # patience p: exactly p validations after the best one, none of them better
    assert len(steps) - 1 - best == 4
    assert stopper.stopped_step == stopper.best_step + 4 * n
    assert stopper.best_step < stopper.stopped_step < run.trainer.max_epochs * n

    # the module holds θ*: the weights of the best checkpoint, not those of the last step
    ckpt = torch.load(
        tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False
    )
    assert ckpt["global_step"] == stopper.best_step
    for key, value in state(run.module).items():
        torch.testing.assert_close(value, ckpt["state_dict"][f"net.{key}"], rtol=0, atol=0)

    # and its validation loss is the best one seen, recomputed from scratch
    x, y = run.dm.splits["val"]
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(run.module.net(x), y)
    assert loss.item() == pytest.approx(stopper.best_value, rel=1e-5)


def test_without_restore_the_last_parameters_stay(tmp_path):
    run, stopper, _ = fit(tmp_path, "callbacks.early_stopping.restore_best=false")
    x, y = run.dm.splits["val"]
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(run.module.net(x), y)
    assert loss.item() > stopper.best_value * 1.01  # the overfitted θ, worse than θ*


@pytest.mark.parametrize("interval", [5, 34, 0.5])
def test_validation_every_n_optimizer_steps(tmp_path, interval):
    """trainer.val_check_interval counts optimizer steps (an int) or a fraction of an epoch."""
    run, stopper, history = fit(tmp_path, f"trainer.val_check_interval={interval}")
    steps_per_epoch = run.dm.steps_per_epoch  # 12 here: 5 and 34 do not divide it
    n = round(interval * steps_per_epoch) if isinstance(interval, float) else interval
    steps = [s for s, _ in history]
    assert steps == list(range(n, n * len(steps) + 1, n))
    assert stopper.best_step % n == 0
    assert stopper.stopped_step == stopper.best_step + 4 * n


def test_best_step_is_zero_when_training_never_improves_on_theta_0(tmp_path):
    """θ* ← θ_o, i* ← 0: with lr so small nothing changes, the first validation is the best."""
    run, stopper, history = fit(tmp_path, "optimizer.lr=1e-12", "trainer.max_epochs=3")
    assert stopper.best_step == history[0][0]
    assert stopper.stopped_step == 3 * run.dm.steps_per_epoch
