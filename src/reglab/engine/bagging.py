"""Bagging (§7.11) as an ensemble strategy: `ensemble=bagging` names `Bagging` (conf/ensemble/).

The engine asks it for the module to train (an `objectives.BaggingModule` over k freshly
initialized members; eq. 7.50 and the vote are documented there) and for the protocol:

    vectorized (default)  the configured protocol trains all members together, each on its
                          own bootstrap resample, in one pass (models.Ensemble: vmap over
                          the members' stacked parameters, any architecture; StackedMLP,
                          batched matmuls, for reglab's MLP and Linear; StackedCNN,
                          grouped convolutions, for its CNN)
    sequential            `ensemble.vectorized=false`: `SequentialBagging`, k ordinary runs
                          one after another from the same initial values and batches, then
                          stacked for evaluation (the reference path)
"""

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from reglab.data.datamodule import DataModule
from reglab.engine.protocols import EarlyStopping71, Outcome
from reglab.engine.run import Run, build_net, module_kwargs
from reglab.engine.trainer import build_callbacks, build_trainer
from reglab.models.stacked import stack
from reglab.objectives.bagging import BaggingModule, out_of_bag_mask
from reglab.objectives.base import RegLabModule


class Bagging:
    """`ensemble=bagging`: how a run trains k members (conf/ensemble/bagging.yaml).

    The engine asks its ensemble strategy for the module to train and the protocol to
    train it with; this one answers a BaggingModule over k freshly initialized members,
    and, for `vectorized=false`, the sequential protocol instead of the configured one.
    """

    def __init__(self, members: int = 10, vote: str = "soft", vectorized: bool = True) -> None:
        self.members, self.vote, self.vectorized = members, vote, vectorized

    def module(self, cfg: DictConfig, dm: DataModule) -> BaggingModule:
        module = self.stack(cfg, dm, [build_net(cfg, dm) for _ in range(self.members)])
        if self.vectorized:
            dm.members = self.members  # each member its own resample, in one pass
        return module

    def protocol(self, configured: EarlyStopping71) -> EarlyStopping71:
        return configured if self.vectorized else SequentialBagging(self)

    def stack(self, cfg: DictConfig, dm: DataModule, nets: list[nn.Module]) -> BaggingModule:
        """A BaggingModule over `nets`, with each member's out-of-bag rows for its test."""
        net = stack(nets, example_shape=dm.example_shape)
        # evaluated a training minibatch at a time: k members × the whole validation split
        # at once held 2–3× the activations of a training step (vmapped CNNs on digits)
        kwargs = module_kwargs(cfg, dm)
        module = BaggingModule(net=net, vote=self.vote, eval_rows=dm.batch_size, **kwargs)
        x, y = dm.splits["train"]
        module.oob = (x, y, out_of_bag_mask(dm, len(nets)))
        return module


class SequentialBagging(EarlyStopping71):
    """The reference path: train member i as an ordinary run on resample i, one after
    another, then stack the trained members and evaluate them as the ensemble.

    best.ckpt then holds the stacked members (each at its own θ*), as the vectorized path's
    does; no last.ckpt is written: a sequential run cannot be resumed part-way."""

    def __init__(self, bagging: Bagging) -> None:
        self.bagging = bagging

    def run(self, run: Run) -> Outcome:
        cfg, k = run.cfg, self.bagging.members
        ensemble: BaggingModule = run.module  # initial members, as the vectorized path has
        trained, stops = [], []
        for i in range(k):
            dm = instantiate(cfg.data, bootstrap=i).prepare()
            # the vectorized path's member i, as it started
            module = RegLabModule(net=ensemble.net.member(i), **module_kwargs(cfg, dm))
            trainer = build_trainer(
                cfg,
                dm,
                build_callbacks(cfg, dm.has("val"), skip=("model_checkpoint", "latest_checkpoint")),
                run.trainer.loggers if i == 0 else [],
            )
            trainer.fit(module, datamodule=dm)
            trained.append(module.net)
            stops.append(trainer.global_step)
        final = self.bagging.stack(cfg, run.dm, trained)
        final.history = []
        tester = build_trainer(cfg, run.dm, [], run.trainer.loggers)
        tester.validate(final, datamodule=run.dm, verbose=False)
        if tester.is_global_zero and cfg.callbacks.get("model_checkpoint"):
            # what the vectorized path's best.ckpt holds: the members' θ*, stacked (k, …)
            best = run.run_dir / "checkpoints" / f"{cfg.callbacks.model_checkpoint.filename}.ckpt"
            tester.save_checkpoint(best)
        metrics = {"stopped_step": max(stops), "ensemble/member_steps_total": sum(stops)}
        return Outcome(final, tester, metrics, [(0, "bagging (sequential)")])
