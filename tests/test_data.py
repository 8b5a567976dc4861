"""Data: seeded splits, training-split standardization, whole-epoch coverage by the chunks."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits

from reglab import instantiate
from reglab.config import compose
from reglab.data import ChunkLoader


def datamodule(*overrides):
    return instantiate(compose(list(overrides), output_dir="unused").data).prepare()


def test_features_standardized_with_training_statistics():
    dm = datamodule("data=diabetes")
    x_train, _ = dm.splits["train"]
    np.testing.assert_allclose(x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(0, unbiased=False), 1, atol=1e-4)  # population std
    # the other splits are scaled with the training statistics, so they are not exactly 0/1
    x_test, _ = dm.splits["test"]
    assert x_test.mean(0).abs().max() > 1e-3


def test_constant_features_do_not_divide_by_zero():
    x_train, _ = datamodule().splits["train"]  # digits has always-blank pixels
    assert torch.isfinite(x_train).all()


def test_regression_targets_are_left_as_they_are():
    dm = datamodule("data=diabetes", "data.val_fraction=0", "data.test_fraction=0")
    _, y = dm.splits["train"]
    assert sorted(y.squeeze(1).tolist()) == pytest.approx(sorted(load_diabetes().target))


def test_split_sizes_are_fractions_of_the_whole_and_disjoint():
    dm = datamodule("data.val_fraction=0.25", "data.test_fraction=0.1")
    n = len(load_digits().target)
    assert len(dm.splits["val"][0]) == round(0.25 * n)
    assert len(dm.splits["test"][0]) == round(0.1 * n)
    rows = torch.cat([x for x, _ in dm.splits.values()])
    assert len(rows) == n
    assert len(torch.unique(rows, dim=0)) == len(
        torch.unique(torch.tensor(load_digits().data), dim=0)
    )


def test_splits_are_a_function_of_the_seed():
    a, b, c = datamodule("seed=1"), datamodule("seed=1"), datamodule("seed=2")
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])
    assert not torch.equal(a.splits["test"][0], c.splits["test"][0])


def test_classification_splits_are_stratified():
    dm = datamodule()
    fractions = [torch.bincount(y, minlength=10) / len(y) for _, y in dm.splits.values()]
    for f in fractions[1:]:
        assert (f - fractions[0]).abs().max() < 0.02


def test_zero_fractions_train_on_everything():
    dm = datamodule("data.val_fraction=0", "data.test_fraction=0")
    assert set(dm.splits) == {"train"}
    assert dm.n_train == len(load_digits().target)


def test_batch_size_at_least_the_training_set_means_full_batch():
    dm = datamodule("data.batch_size=100000")
    assert dm.steps_per_epoch == 1


def test_chunks_cover_every_row_once_per_epoch_in_a_seeded_order():
    x = torch.arange(100.0).unsqueeze(1)
    loader = ChunkLoader(x, x.squeeze(1).long(), batch_size=8, steps_per_chunk=13, shuffle=True)
    assert loader.steps_per_epoch == 13 and len(loader) == 1
    first = torch.cat([xb for xb, _ in loader]).squeeze(1)
    second = torch.cat([xb for xb, _ in loader]).squeeze(1)
    assert sorted(first.tolist()) == list(range(100))
    assert not torch.equal(first, second)  # reshuffled each epoch
    again = ChunkLoader(x, x.squeeze(1).long(), batch_size=8, steps_per_chunk=13, shuffle=True)
    assert torch.equal(torch.cat([xb for xb, _ in again]).squeeze(1), first)


def test_chunk_size_must_divide_the_epoch():
    with pytest.raises(ValueError, match="must divide"):
        ChunkLoader(torch.zeros(100, 1), torch.zeros(100), batch_size=8, steps_per_chunk=5)


def test_bootstrap_resamples_the_training_split_with_replacement():
    plain = datamodule("data=diabetes")
    a, b, a_again = (datamodule("data=diabetes", f"data.bootstrap={i}") for i in (0, 1, 0))
    x, _ = plain.splits["train"]
    xa, _ = a.splits["train"]
    assert len(xa) == len(x)  # same size
    rows = {tuple(r) for r in x.tolist()}
    drawn = [tuple(r) for r in xa.tolist()]
    assert set(drawn) <= rows and len(set(drawn)) < len(drawn)  # from the split, with repeats
    # out-of-bag = the rows never drawn; about (1 − 1/n)^n ≈ 37 % of them
    assert len(set(drawn)) + len(a.oob_index) == len(x)
    assert 0.3 < len(a.oob_index) / len(x) < 0.45
    assert not {tuple(x[i].tolist()) for i in a.oob_index.tolist()} & set(drawn)
    assert torch.equal(xa, a_again.splits["train"][0])  # deterministic per (seed, member)
    assert not torch.equal(xa, b.splits["train"][0])  # members differ
    assert torch.equal(a.splits["test"][0], plain.splits["test"][0])  # val/test untouched
