"""Bagging: bootstrap members, votes, vectorized = sequential, and eq. 7.50's diagnostics."""

import math

import pytest
import torch

from reglab.config import ConfigError, compose
from reglab.data import bootstrap_index
from reglab.engine.bagging import SequentialBagging
from reglab.engine.protocols import EarlyStopping71
from reglab.engine.run import build
from reglab.objectives import out_of_bag_mask, vote

SMALL = [
    "ensemble=bagging",
    "ensemble.members=4",
    "model.hidden_sizes=[32]",
    "trainer.max_epochs=3",
    "callbacks.early_stopping.patience=100",
    "callbacks.progress_bar=null",
    "logger=none",
    "threads=1",
]


def test_bootstrap_indices_are_with_replacement_of_the_split_size_and_differ():
    rows = [bootstrap_index(500, seed=0, member=i) for i in range(5)]
    for r in rows:
        assert len(r) == 500 and r.min() >= 0 and r.max() < 500
        assert len(torch.unique(r)) < 500  # repeats: drawn with replacement
        # a fraction (1 − 1/n)^n ≈ e⁻¹ of the rows is left out
        assert abs(1 - len(torch.unique(r)) / 500 - math.exp(-1)) < 0.05
    assert all(not torch.equal(rows[0], r) for r in rows[1:])
    assert torch.equal(rows[2], bootstrap_index(500, seed=0, member=2))


def test_out_of_bag_mask_marks_rows_a_member_never_drew(tmp_path):
    run = build(compose(SMALL, output_dir=tmp_path))
    mask = out_of_bag_mask(run.dm, 4)
    for i in range(4):
        drawn = set(bootstrap_index(run.dm.n_train, run.dm.seed, i).tolist())
        assert {j for j in range(run.dm.n_train) if not mask[i, j]} == drawn


def test_soft_and_hard_votes_on_a_hand_made_example():
    p = torch.tensor(
        [  # 3 members, 1 example, 3 classes
            [[0.50, 0.45, 0.05]],
            [[0.40, 0.55, 0.05]],
            [[0.30, 0.65, 0.05]],
        ]
    )
    soft = vote(p.log(), "classification", "soft").exp()
    torch.testing.assert_close(soft, torch.tensor([[0.40, 0.55, 0.05]]))
    hard = vote(p.log(), "classification", "hard").exp()
    assert hard.argmax(-1).item() == 1  # members vote 0, 1, 1
    # a tie (one vote each for classes 0 and 2) goes to the lowest class
    tie = torch.tensor([[[0.9, 0.05, 0.05]], [[0.05, 0.05, 0.9]]]).log()
    assert vote(tie, "classification", "hard").exp().argmax(-1).item() == 0
    values = torch.tensor([[[1.0]], [[2.0]], [[6.0]]])
    assert vote(values, "regression").item() == 3.0


def test_vectorized_members_equal_sequentially_trained_ones(tmp_path):
    """Same initial members, same bootstrap batches: one pass or k runs give the same nets."""
    vec = build(compose(SMALL, output_dir=tmp_path / "v"))
    vectorized = EarlyStopping71().run(vec).module.net
    seq = build(compose([*SMALL, "ensemble.vectorized=false"], output_dir=tmp_path / "s"))
    sequential = seq.ensemble.protocol(EarlyStopping71()).run(seq).module.net
    assert isinstance(seq.ensemble.protocol(EarlyStopping71()), SequentialBagging)
    x = vec.dm.splits["test"][0]
    for i in range(4):
        for a, b in zip(vectorized.layers, sequential.layers, strict=True):
            torch.testing.assert_close(a.weight[i], b.weight[i], rtol=1e-4, atol=1e-5)
        assert (
            not torch.allclose(vectorized.layers[0].weight[0], vectorized.layers[0].weight[i])
            or i == 0
        )
    torch.testing.assert_close(vectorized(x), sequential(x), rtol=1e-4, atol=1e-4)


def test_members_differ_and_see_different_dropout_masks(tmp_path):
    run = build(compose([*SMALL, "model.dropout.hidden=0.5"], output_dir=tmp_path))
    net = run.module.net.train()
    out = net(torch.ones(1, run.dm.n_features))  # the same input for every member
    same_init = run.module.net.member(0)
    assert not torch.allclose(out[0], out[1])
    assert not torch.equal(same_init[0].weight, run.module.net.member(1)[0].weight)


def test_error_moments_satisfy_eq_7_50_and_match_the_ensemble_error(train_api):
    metrics, _ = train_api(*SMALL, "data=diabetes")
    v, c, k = metrics["ensemble/v"], metrics["ensemble/c"], 4
    assert metrics["ensemble/predicted_mse"] == pytest.approx(v / k + (k - 1) * c / k, rel=1e-6)
    # measured directly from the averaged errors: the soft-vote ensemble's test MSE
    assert metrics["ensemble/measured_mse"] == pytest.approx(metrics["test/mse"], rel=1e-4)
    assert metrics["ensemble/predicted_mse"] == pytest.approx(
        metrics["ensemble/measured_mse"], rel=1e-4
    )
    # v is the members' mean squared error
    assert v == pytest.approx(metrics["test/member_mse_mean"], rel=1e-4)
    assert 0 < metrics["oob/coverage"] <= 1


def test_classification_diagnostics_use_probability_errors(train_api):
    metrics, _ = train_api(*SMALL)
    v, c = metrics["ensemble/v"], metrics["ensemble/c"]
    assert 0 < c < v < 2  # a squared probability error is at most 2
    assert {f"test/member_acc_{i}" for i in range(4)} <= set(metrics)
    member_mean = sum(metrics[f"test/member_acc_{i}"] for i in range(4)) / 4
    assert metrics["test/member_acc_mean"] == pytest.approx(member_mean)
    assert 0 < metrics["oob/acc"] <= 1


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["ensemble=bagging", "ensemble.members=0"], "ensemble.members"),
        (["ensemble=bagging", "ensemble.vote=median"], "ensemble.vote"),
        (["ensemble=bagging", "protocol=retrain_all"], "ensemble=bagging"),
    ],
)
def test_bad_bagging_settings_are_rejected(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        build(compose(overrides, output_dir=tmp_path))


def test_gradient_clipping_acts_on_each_member_alone(tmp_path):
    run = build(compose([*SMALL, "trainer.gradient_clip_val=1.0"], output_dir=tmp_path))
    module = run.module
    for i, p in enumerate(module.parameters()):
        p.grad = torch.zeros_like(p)
        p.grad[0] = 10.0  # member 0: a huge gradient
        p.grad[1] = 1e-3 * (i + 1)  # member 1: a small one, which must stay as it is
    small = [p.grad[1].clone() for p in module.parameters()]
    module.clip_(None)
    norm0 = torch.stack([p.grad[0].square().sum() for p in module.parameters()]).sum().sqrt()
    assert norm0.item() == pytest.approx(1.0, rel=1e-4)
    for p, before in zip(module.parameters(), small, strict=True):
        torch.testing.assert_close(p.grad[1], before)


@pytest.mark.slow
def test_ten_member_ensemble_beats_its_mean_member_on_digits(train_api):
    """The slide's conclusion, over three seeds: averaging members with partly independent
    errors beats the typical member."""
    gains = []
    for seed in range(3):
        metrics, _ = train_api("ensemble=bagging", f"seed={seed}", "callbacks.progress_bar=null")
        gains.append(metrics["test/acc"] - metrics["test/member_acc_mean"])
        assert metrics["ensemble/c"] < metrics["ensemble/v"]  # errors not perfectly correlated
    assert sum(gains) / len(gains) > 0.005 and min(gains) > 0


def test_members_train_on_augmented_batches_when_augmentation_is_on(tmp_path):
    run = build(compose([*SMALL, "augmentation=[affine,noise]"], output_dir=tmp_path))
    assert run.module.augment is not None and len(run.module.augment) == 2
