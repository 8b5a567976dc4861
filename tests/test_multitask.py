"""Multi-task learning: a shared trunk, a head per task, J = Σ_t w_t J_t (§7.7).

Checked against hand-computed losses, the digits' task tables, the data's spreading of
labels over tasks, and (slow) against single-task models on tasks that share a factor.
"""

import functools
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from sklearn.datasets import load_digits

import reglab
from reglab.data import DataModule, digit_tasks, make_multitask
from reglab.engine.run import build_module
from reglab.models import MLP, MultiTaskNet, Task
from reglab.objectives import MultiTaskModule
from reglab.regularization import NoPenalty

TASKS = [Task("a", "classification", 3, 1.0), Task("b", "regression", 1, 0.5)]


def _module(tasks=TASKS, **kwargs) -> MultiTaskModule:
    torch.manual_seed(0)
    outputs = sum(t.outputs for t in tasks)
    net = MultiTaskNet(5, outputs, tasks, shared_size=8, **kwargs)
    return MultiTaskModule(net, NoPenalty(), torch.optim.SGD, "multitask", outputs)


def test_net_shares_the_trunk_and_concatenates_one_head_per_task():
    trunk = functools.partial(MLP, hidden_sizes=[16])
    net = MultiTaskNet(5, 4, TASKS, trunk, shared_size=8, head_sizes=[6])
    assert net(torch.randn(7, 5)).shape == (7, 4)
    assert list(net.heads) == ["a", "b"]
    trunk = {id(p) for p in net.trunk.parameters()}
    for head in net.heads.values():  # heads own their parameters; the trunk is shared
        assert trunk.isdisjoint(id(p) for p in head.parameters())
    assert net.heads["a"][0].in_features == 8


def test_loss_is_the_weighted_sum_of_task_losses_over_labelled_examples():
    module = _module()
    output = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor(
        [[0, 1.0], [2, float("nan")], [float("nan"), -0.5], [1, 2.0], [0, 0.0], [2, 1.0]]
    )
    has_a, has_b = ~y[:, 0].isnan(), ~y[:, 1].isnan()
    expected = F.cross_entropy(output[has_a, :3], y[has_a, 0].long()) + 0.5 * F.mse_loss(
        output[has_b, 3], y[has_b, 1]
    )
    loss = module.step_loss(output, y)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # a missing target sends no gradient to its task's outputs
    assert output.grad[~has_a, :3].abs().sum() == 0 and output.grad[~has_b, 3].abs().sum() == 0
    assert output.grad[has_a, :3].abs().sum() > 0 and output.grad[has_b, 3].abs().sum() > 0


def test_a_task_of_weight_zero_trains_neither_its_head_nor_the_trunk():
    tasks = [Task("a", "classification", 3, 0.0), Task("b", "regression", 1, 1.0)]
    module = _module(tasks)
    x, y = torch.randn(6, 5), torch.tensor([[0, 1.0]] * 6)
    module.step_loss(module.net(x), y).backward()
    assert all(
        p.grad is None or p.grad.abs().sum() == 0 for p in module.net.heads["a"].parameters()
    )
    assert all(p.grad.abs().sum() > 0 for p in module.net.heads["b"].parameters())


def test_digit_tasks_map_each_digit_through_its_table():
    tasks = {
        "digit": {"kind": "classification", "outputs": 10},
        "parity": {"kind": "classification", "outputs": 2, "targets": [0, 1] * 5},
    }
    x, y = digit_tasks(tasks)
    digits = load_digits().target
    assert x.shape == (len(digits), 64) and y.shape == (len(digits), 2)
    np.testing.assert_array_equal(y[:, 0], digits)
    np.testing.assert_array_equal(y[:, 1], digits % 2)


SYNTHETIC = {f"t{i}": {"kind": "regression", "outputs": 1} for i in range(4)} | {
    "c": {"kind": "classification", "outputs": 3}
}


def test_synthetic_tasks_share_a_low_rank_factor():
    x, y = make_multitask(SYNTHETIC, n_samples=2000, n_features=20, rank=2, noise=0.0)
    regression = y[:, :4]
    # every regression target is a linear function of x through the same 2-dim factor
    coef, *_ = np.linalg.lstsq(x, regression, rcond=None)
    np.testing.assert_allclose(x @ coef, regression, atol=1e-8)
    assert np.linalg.matrix_rank(coef, tol=1e-8) == 2
    assert set(np.unique(y[:, 4])) == {0, 1, 2}


def _dm(**kwargs) -> DataModule:
    source = lambda: make_multitask(SYNTHETIC, n_samples=600, n_features=10)  # noqa: E731
    args = {"task": "multitask", "tasks": SYNTHETIC, "seed": 3, **kwargs}
    return DataModule(source, **args).prepare()


def test_labels_spread_over_tasks_and_single_task_runs_see_the_same_examples():
    dm = _dm(labels_per_example=1)
    x, y = dm.splits["train"]
    labelled = ~y.isnan()
    assert (labelled.sum(1) == 1).all()  # each training example has one task's target
    counts = labelled.sum(0)
    assert counts.max() - counts.min() <= 1  # in turn: every task the same share
    for split in ("val", "test"):  # evaluation is fully labelled
        assert not dm.splits[split][1].isnan().any()
    single = _dm(labels_per_example=1, use_tasks=["t2"])
    xs, ys = single.splits["train"]
    assert ys.shape == (int(counts[2]), 1) and not ys.isnan().any()
    # the same examples and targets as task t2 has in the multi-task data (standardized
    # with its own training split, so compare through the raw features)
    raw = x * dm.feature_std + dm.feature_mean
    raw_single = xs * single.feature_std + single.feature_mean
    torch.testing.assert_close(raw_single, raw[labelled[:, 2]])
    torch.testing.assert_close(ys[:, 0], y[labelled[:, 2], 2])
    assert single.n_outputs == 1 and dm.n_outputs == 4 + 3


def test_digits_multitask_run_logs_a_loss_and_metric_per_task(train_api):
    metrics, _ = train_api(
        "model=multitask", "data=digits_multitask", "debug=fast", "logger=none",
        "callbacks.progress_bar=null", "trainer.max_epochs=3",
    )  # fmt: skip
    for name, metric in (
        ("digit", "acc"),
        ("parity", "acc"),
        ("at_least_5", "acc"),
        ("loops", "mse"),
    ):
        assert f"test/{name}/{metric}" in metrics and f"test/{name}/loss" in metrics
    assert metrics["test/parity/acc"] > 0.8 and metrics["test/digit/acc"] > 0.7
    weights = {"digit": 1.0, "parity": 1.0, "at_least_5": 1.0, "loops": 0.5}
    total = sum(w * metrics[f"test/{n}/loss"] for n, w in weights.items())
    assert metrics["test/loss"] == pytest.approx(total, rel=1e-5)


def test_module_follows_the_model_config():
    cfg = reglab.compose(["model=multitask", "data=digits_multitask"])
    data = instantiate(cfg.data).prepare()
    module = build_module(cfg, data)
    assert isinstance(module, MultiTaskModule)
    assert [t.name for t in module.tasks] == ["digit", "parity", "at_least_5", "loops"]


@pytest.mark.slow
def test_multitask_beats_single_task_models_on_shared_factor_tasks(train_api):
    """§7.7's claim, on synthetic tasks that share a 2-dim factor of 60 features and are each
    labelled on their own ~67 examples: over seeds 0–2 the shared trunk gives lower test MSE
    on t0 and t1 than a model trained on that task alone (measured: 0.629 vs 0.707 and
    0.644 vs 0.685; every task wins: README, "Multi-task learning")."""
    common = ("experiment=multitask", "logger=none", "callbacks.progress_bar=null")
    multi = {t: [] for t in ("t0", "t1")}
    single = {t: [] for t in ("t0", "t1")}
    for seed in (0, 1, 2):
        metrics, _ = train_api(*common, f"seed={seed}")
        for task in multi:
            multi[task].append(metrics[f"test/{task}/mse"])
            alone, _ = train_api(*common, f"seed={seed}", f"data.use_tasks=[{task}]")
            single[task].append(alone[f"test/{task}/mse"])
    for task in multi:
        assert statistics.mean(multi[task]) < statistics.mean(single[task]), (multi, single)


@pytest.mark.parametrize(
    "model", [["model=multitask", "data=synthetic_multitask"], ["model=autoencoder"]]
)
def test_same_seed_gives_the_same_metrics(train_api, model):
    args = (*model, "data.labeled_fraction=0.5", "debug=fast", "logger=none")
    first, _ = train_api(*args, "callbacks.progress_bar=null")
    again, _ = train_api(*args, "callbacks.progress_bar=null")
    other, _ = train_api(*args, "callbacks.progress_bar=null", "seed=1")
    assert first == again
    assert first != other
