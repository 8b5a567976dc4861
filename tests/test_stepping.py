"""The direct backward/step path (objectives/stepping.py) is Lightning's path minus work
that does nothing: same parameters and metrics, same step counts; a hook that listens gets
Lightning's path and is called at every optimizer step."""

import pytest
import pytorch_lightning as pl
import torch

import reglab
from reglab.engine.run import build

QUICK = ["trainer.max_epochs=3", "callbacks.progress_bar=null", "logger=none", "threads=1"]
COUNTER = "+callbacks.counter._target_=test_stepping.StepCounter"


class StepCounter(pl.Callback):
    """Listens to the hooks the direct path skips, so the run takes Lightning's path."""

    def __init__(self) -> None:
        self.backward = self.steps = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        self.backward += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps += 1


def _fit(tmp_path, *overrides: str):
    run = build(reglab.compose([*QUICK, *overrides], output_dir=tmp_path))
    run.trainer.fit(run.module, datamodule=run.dm)
    state = {k: v.clone() for k, v in run.module.state_dict().items()}
    return run, state


@pytest.mark.parametrize(
    "network",
    [
        ["model.hidden_sizes=[32]", "regularizer=l1", "trainer.gradient_clip_val=1.0"],
        ["model=cnn", "model.channels=[4]", "model.hidden_sizes=[8]", "data.train_size=200"],
        # bf16 autocast needs no loss scale: the direct path, clipping with fused Adam too
        ["trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0"],
    ],
    ids=["mlp", "cnn", "mlp-bf16"],
)
def test_the_direct_path_trains_what_lightnings_path_trains(tmp_path, network):
    direct, theirs = (
        _fit(tmp_path / "direct", *network),
        _fit(tmp_path / "hooked", *network, COUNTER),
    )
    (run, state), (hooked, hooked_state) = direct, theirs
    counter = next(cb for cb in hooked.trainer.callbacks if isinstance(cb, StepCounter))
    assert run.module._direct and not hooked.module._direct
    assert run.trainer.global_step == hooked.trainer.global_step > 0
    assert counter.steps == counter.backward == hooked.trainer.global_step
    for key, value in state.items():
        torch.testing.assert_close(value, hooked_state[key], rtol=0, atol=0, msg=key)
