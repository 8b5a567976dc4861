"""How a bagged ensemble is evaluated: a training batch of examples at a time (its memory),
chunks of at most an epoch's rows, the Monte Carlo curve of the ensemble (not of its mean
member), and the checkpoint the sequential path leaves. Tiny members, as in test_bagging."""

import pytest
import torch
import torch.nn.functional as F
from test_bagging import CKPT, NETWORKS, SMALL

from reglab.config import compose
from reglab.engine.run import build
from reglab.engine.trainer import chunk_steps

MC = ["model.dropout.hidden=0.5", "inference=mc", "inference.samples=4"]


def test_chunks_of_k_members_hold_at_most_an_epoch_of_rows():
    assert chunk_steps(17, 17) == 17  # one model: a chunk per epoch, one copy of the data
    assert chunk_steps(17, 17, members=8) == 1  # 8 × 17 steps would be 8 copies
    assert chunk_steps(12, 12, members=3) == 4 and chunk_steps(12, 12, members=5) == 2
    assert chunk_steps(6, 12, members=1) == 6  # a validation every 6 steps still exact


def test_a_bagged_cnn_validates_a_batch_at_a_time_with_the_metrics_of_one_pass(tmp_path):
    run = build(compose([*NETWORKS["cnn"], "data.batch_size=16"], output_dir=tmp_path))
    rows: list[int] = []
    run.module.net.register_forward_pre_hook(lambda _, args: rows.append(args[0].shape[0]))
    x, _ = run.dm.train_dataloader().__iter__().__next__()
    assert x.shape[0] * x.shape[1] <= run.dm.n_train  # k members' chunk: one copy at most
    chunked = run.trainer.validate(run.module, datamodule=run.dm, verbose=False)[0]
    assert max(rows) == 16 < len(run.dm.splits["val"][0])
    run.module.eval_rows = 10**9  # the whole validation split through all members at once
    whole = run.trainer.validate(run.module, datamodule=run.dm, verbose=False)[0]
    assert max(rows) == len(run.dm.splits["val"][0])
    assert chunked == pytest.approx(whole, rel=1e-5)


def _expected_mc_curve(outputs: torch.Tensor, y: torch.Tensor, rule: str) -> dict[int, float]:
    """Accuracy of the ensemble's prediction from each member's first t masks."""
    probs = outputs.softmax(-1)  # (k, T, batch, classes)
    curve = {}
    for t in (1, 2, outputs.shape[1]):
        members = probs[:, :t].mean(1)  # each member's MC prediction
        if rule == "soft":
            guess = members.mean(0).argmax(-1)
        else:  # the most votes; ties to the lowest class
            votes = F.one_hot(members.argmax(-1), outputs.shape[-1]).sum(0)
            guess = votes.argmax(-1)
        curve[t] = (guess == y).float().mean().item()
    return curve


@pytest.mark.parametrize("rule", ["soft", "hard"])
def test_the_mc_curve_of_an_ensemble_scores_its_vote(tmp_path, rule):
    run = build(compose([*SMALL, *MC, f"ensemble.vote={rule}"], output_dir=tmp_path))
    module, g = run.module, torch.Generator().manual_seed(0)
    outputs = torch.randn(4, 4, 50, 10, generator=g) * 2  # (k members, T masks, batch, C)
    y = torch.randint(0, 10, (50,), generator=g)
    module._accumulate_mc(outputs, y, "test")
    count = module._mc_sums["_count"]
    got = {t: (module._mc_sums[f"test/acc_mc_T{t}"] / count).item() for t in (1, 2, 4)}
    assert got == pytest.approx(_expected_mc_curve(outputs, y, rule))
    member_mean = (outputs.softmax(-1).mean(1).argmax(-1) == y).float().mean().item()
    assert got[4] != pytest.approx(member_mean)  # what it reported before


def test_a_bagged_mc_run_reports_the_ensembles_accuracy_at_every_mask(train_api):
    metrics, _ = train_api(*NETWORKS["cnn"], *MC)
    # all T masks: the very prediction test/acc scores (same masks, same pass)
    assert metrics["test/acc_mc_T4"] == pytest.approx(metrics["test/acc"])
    assert {"test/acc_mc_T1", "test/acc_mc_T2"} <= set(metrics)


def test_sequential_bagging_saves_the_members_it_tested_in_best_ckpt(train_api, tmp_path):
    """best.ckpt of `ensemble.vectorized=false` loads into the vectorized path's module, and
    its members' soft vote on the test split is the run's test accuracy."""
    metrics, run_dir = train_api(*NETWORKS["cnn"], *CKPT, "ensemble.vectorized=false")
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # not resumable part-way
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    run = build(compose(NETWORKS["cnn"], output_dir=tmp_path))
    run.module.load_state_dict(state)  # strict: the same names and (k, …) shapes
    x, y = run.dm.splits["test"]
    with torch.no_grad():
        p = run.module.net.eval()(x).softmax(-1)  # (k, n, classes)
    assert metrics["test/acc"] == pytest.approx((p.mean(0).argmax(-1) == y).float().mean().item())
    for i in range(len(p)):
        member = (p[i].argmax(-1) == y).float().mean().item()
        assert metrics[f"test/member_acc_{i}"] == pytest.approx(member)
