"""Bagging: bootstrap members, votes, vectorized = sequential, and eq. 7.50's diagnostics,
on MLPs, `model=cnn`, `model=resnet` and a user's own nn.Module (`UserNet`, by _target_).

Kept fast: 3–4 members, tiny widths, 200 training rows for the convolutional nets."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

import reglab
from reglab.config import ConfigError, compose
from reglab.data import bootstrap_index
from reglab.engine.bagging import SequentialBagging
from reglab.engine.protocols import EarlyStopping71
from reglab.engine.run import build
from reglab.models import CNN, MLP, Ensemble, ResNet, StackedCNN, StackedMLP, stack
from reglab.objectives import BaggingModule, out_of_bag_mask, vote

BAG = [
    "ensemble=bagging",
    "callbacks.early_stopping.patience=100",
    "callbacks.progress_bar=null",
    "logger=none",
    "threads=1",
]
SMALL = [*BAG, "ensemble.members=4", "model.hidden_sizes=[32]", "trainer.max_epochs=3"]
# the convolutional members: 3, tiny, on 200 digits (4 steps an epoch), Adam at 0.01
IMAGES = [*BAG, "ensemble.members=3", "data.train_size=200", "optimizer.lr=0.01"]
IMAGES += ["trainer.max_epochs=2"]
NETWORKS = {
    "mlp": SMALL,
    "cnn": [*IMAGES, "model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]"],
    "resnet": [*IMAGES, "model=resnet", "model.depth=8", "model.width=4"],
    "user": [*IMAGES, "model=linear", "~model.dropout", "model._target_=test_bagging.UserNet"],
}


class UserNet(nn.Module):
    """A user's network, as reglab never saw it: BatchNorm, spatial dropout, a linear head."""

    def __init__(self, in_channels: int, out_features: int, width: int = 4, p: float = 0.0):
        super().__init__()
        # no bias before BatchNorm (it would cancel it): its gradient is zero up to rounding,
        # which Adam would scale up to whole steps, so no two computations would agree
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(width)
        self.drop = nn.Dropout2d(p)
        self.head = nn.Linear(width * 4, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.norm(self.conv(x)).relu())
        return self.head(F.adaptive_avg_pool2d(h, 2).flatten(1))


def _members(kind: str, k: int = 3) -> list[nn.Module]:
    make = {
        "cnn": lambda: CNN(1, 10, (1, 8, 8), channels=(4, 8), hidden_sizes=(16,)),
        "resnet": lambda: ResNet(1, 10, depth=8, width=4),
        "user": lambda: UserNet(1, 10),
    }[kind]
    return [make() for _ in range(k)]


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


# -- the vectorized ensemble (models.Ensemble) against its members, one by one ---------------------
@pytest.mark.parametrize("kind", ["cnn", "resnet", "user"])
def test_ensemble_step_is_each_members_own_step(kind):
    """Outputs, gradients and BatchNorm's running statistics of the vmapped ensemble are
    those of each member run alone on its own rows."""
    members = _members(kind)
    ensemble = Ensemble(copy.deepcopy(members), example_shape=(1, 8, 8)).train()
    x = torch.randn(3, 6, 1, 8, 8)  # each member its own 6 images
    out = ensemble(x)
    out.square().sum().backward()
    for i, net in enumerate(members):
        own = net.train()(x[i])
        own.square().sum().backward()
        torch.testing.assert_close(out[i], own, rtol=1e-4, atol=1e-5)
        state = ensemble.member(i).state_dict()  # running_mean/var, num_batches_tracked too
        assert state.keys() == net.state_dict().keys()
        for name, value in net.state_dict().items():
            torch.testing.assert_close(state[name], value, rtol=1e-4, atol=1e-6)
        for p, q in zip(ensemble.stacked.parameters(), net.parameters(), strict=True):
            torch.testing.assert_close(p.grad[i], q.grad, rtol=1e-4, atol=1e-5)
    if kind != "cnn":  # BatchNorm's statistics are each member's own
        means = [b for n, b in ensemble.stacked.named_buffers() if n.endswith("running_mean")]
        assert not torch.allclose(means[0][0], means[0][1])


def test_a_shared_batch_goes_to_every_member_and_eval_uses_running_statistics():
    members = [m.eval() for m in _members("resnet")]
    ensemble = Ensemble(members, example_shape=(1, 8, 8)).eval()
    x = torch.randn(5, 1, 8, 8)
    out = ensemble(x)
    assert out.shape == (3, 5, 10)
    for i, net in enumerate(members):
        torch.testing.assert_close(out[i], net(x), rtol=1e-4, atol=1e-5)


def test_members_draw_their_own_dropout_masks_under_vmap():
    """k copies of one network: in training mode only the masks can make them differ."""
    net = UserNet(1, 10, p=0.5)
    ensemble = Ensemble([copy.deepcopy(net) for _ in range(4)], example_shape=(1, 8, 8))
    x = torch.randn(5, 1, 8, 8)
    masked = ensemble.train()(x)
    assert all(not torch.allclose(masked[0], masked[i]) for i in range(1, 4))
    plain = ensemble.eval()(x)
    assert all(torch.equal(plain[0], plain[i]) for i in range(1, 4))


def test_tied_weights_stay_tied_in_the_stack():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
            self.b.weight = self.a.weight  # one tensor, two layers

        def forward(self, x):
            return self.b(self.a(x).tanh())

    members = [Tied() for _ in range(3)]
    ensemble = Ensemble(members)
    stacked = ensemble.stacked
    assert stacked.a.weight is stacked.b.weight and stacked.a.weight.shape == (3, 4, 4)
    x = torch.randn(2, 4)
    for i, net in enumerate(members):
        torch.testing.assert_close(ensemble(x)[i], net(x))


def test_the_mlp_fast_path_computes_what_the_general_ensemble_computes():
    members = [MLP(64, 10, [16, 8]) for _ in range(3)]
    fast, general = stack(members), stack(_members("resnet", 2))
    assert isinstance(fast, StackedMLP) and isinstance(general, Ensemble)
    vmapped = Ensemble(members).train()
    optimizers = [torch.optim.SGD(net.parameters(), lr=0.1) for net in (fast, vmapped)]
    x = torch.randn(3, 5, 64)
    for net, opt in zip((fast, vmapped), optimizers, strict=True):  # one step each
        net(x).square().sum().backward()
        opt.step()
    torch.testing.assert_close(fast.eval()(x), vmapped.eval()(x), rtol=1e-4, atol=1e-5)
    for i in range(3):
        a, b = fast.member(i).state_dict(), vmapped.member(i).state_dict()
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)


# -- the CNN fast path (models.StackedCNN: grouped convolutions) against its members --------------
class SubCNN(CNN):
    """A subclass may change forward: it gets the general path."""


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("cnn", StackedCNN), ("resnet", Ensemble), ("user", Ensemble), ("subclass", Ensemble)],
)
def test_stack_picks_the_cnn_fast_path_for_exactly_reglabs_cnn(kind, expected):
    if kind == "subclass":
        members = [SubCNN(1, 10, (1, 8, 8), channels=(4,), hidden_sizes=()) for _ in range(2)]
    else:
        members = _members(kind, 2)
    assert type(stack(members, example_shape=(1, 8, 8))) is expected


def test_bagging_model_cnn_trains_a_stacked_cnn(tmp_path):
    assert isinstance(build(compose(NETWORKS["cnn"], output_dir=tmp_path)).module.net, StackedCNN)


NO_DROPOUT = {"input": 0.0, "channel": 0.0, "hidden": 0.0}
SOME_DROPOUT = {"input": 0.2, "channel": 0.3, "hidden": 0.4}


@pytest.mark.parametrize(
    ("mode", "dropout"),
    [("train", {}), ("train", NO_DROPOUT), ("eval", NO_DROPOUT), ("eval", SOME_DROPOUT)],
)
def test_stacked_cnn_step_is_each_members_own_step(dropout, mode):
    """Outputs and gradients of StackedCNN are those of each member CNN alone on its own rows,
    and on a batch shared by all (in training mode with p = 0 or no dropout layers: masks are
    random; reglab's CNN has no BatchNorm, so there are no running statistics to compare)."""
    members = [
        CNN(1, 10, (1, 8, 8), channels=(4, 8), hidden_sizes=(16,), dropout=dropout)
        for _ in range(3)
    ]
    stacked = StackedCNN(copy.deepcopy(members), example_shape=(1, 8, 8)).train(mode == "train")
    x = torch.randn(3, 6, 1, 8, 8)  # each member its own 6 images
    out = stacked(x)
    out.square().sum().backward()
    shared = stacked(x[0])
    assert out.shape == shared.shape == (3, 6, 10)
    for i, net in enumerate(members):
        net.train(mode == "train")
        own = net(x[i])
        own.square().sum().backward()
        torch.testing.assert_close(out[i], own, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(shared[i], net(x[0]), rtol=1e-5, atol=1e-6)
        copied = stacked.member(i)
        assert type(copied) is CNN
        for (name, p), q in zip(copied.named_parameters(), net.parameters(), strict=True):
            torch.testing.assert_close(p, q, msg=name)
        for (name, p), q in zip(stacked.named_parameters(), net.parameters(), strict=True):
            g = p.grad[i]  # StackedLinear's W is (in, out), its bias (1, out)
            g = g.T if name.startswith("classifier") and name.endswith("weight") else g
            torch.testing.assert_close(g.reshape(q.shape), q.grad, rtol=1e-4, atol=1e-5)


def test_stacked_cnn_members_draw_their_own_masks_and_keep_their_own_parameters():
    """k copies of one CNN: in training mode only the masks (input, channel, hidden) can make
    them differ; every parameter has the members on its leading axis (per-member clipping)."""
    for rates in ({"input": 0.5}, {"channel": 0.5}, {"hidden": 0.5}):
        net = CNN(1, 10, (1, 8, 8), channels=(4, 8), hidden_sizes=(16,), dropout=rates)
        stacked = StackedCNN([copy.deepcopy(net) for _ in range(4)], example_shape=(1, 8, 8))
        assert all(p.shape[0] == 4 for p in stacked.parameters())
        x = torch.randn(5, 1, 8, 8)
        masked = stacked.train()(x)
        assert all(not torch.allclose(masked[0], masked[i]) for i in range(1, 4)), rates
        own = stacked(x.expand(4, *x.shape))
        assert all(not torch.allclose(own[0], own[i]) for i in range(1, 4)), rates
        stacked.eval()  # as Monte Carlo dropout samples: only the dropout layers train
        for m in stacked.modules():
            m.train(isinstance(m, nn.modules.dropout._DropoutNd))
        sampled = stacked(x)
        assert all(not torch.allclose(sampled[0], sampled[i]) for i in range(1, 4)), rates
        plain = stacked.eval()(x)
        # equal up to rounding: on some CPUs the grouped convolution's blocks round one
        # member's sums differently (1.5e-8 measured); a mask would differ by far more
        for i in range(1, 4):
            torch.testing.assert_close(plain[0], plain[i], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(plain[0], net.eval()(x), rtol=1e-5, atol=1e-6)


# -- vectorized = sequential, through reglab ------------------------------------------------------
@pytest.mark.parametrize("kind", list(NETWORKS))
def test_vectorized_members_equal_sequentially_trained_ones(tmp_path, kind):
    """Same initial members, same bootstrap batches: one pass or k ordinary runs (member i on
    `data.bootstrap=i`) give the same networks, BatchNorm statistics included."""
    overrides = NETWORKS[kind]
    vec = build(compose(overrides, output_dir=tmp_path / "v"))
    vectorized = EarlyStopping71().run(vec).module.net
    seq = build(compose([*overrides, "ensemble.vectorized=false"], output_dir=tmp_path / "s"))
    assert isinstance(seq.ensemble.protocol(EarlyStopping71()), SequentialBagging)
    sequential = seq.ensemble.protocol(EarlyStopping71()).run(seq).module.net
    a, b = vectorized.state_dict(), sequential.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(
            a[name], b[name], rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}"
        )
    first = next(iter(vectorized.parameters()))
    assert all(not torch.allclose(first[0], first[i]) for i in range(1, vectorized.members))
    x = vec.dm.splits["test"][0]
    vectorized.eval(), sequential.eval()
    torch.testing.assert_close(vectorized(x), sequential(x), rtol=1e-4, atol=1e-4)


def test_each_member_trains_on_its_own_resample(tmp_path):
    """An epoch of the vectorized loader: member i's rows are resample i, reordered."""
    run = build(compose(NETWORKS["cnn"], output_dir=tmp_path))
    x, _ = run.dm.splits["train"]
    blocks = [xb for xb, _ in run.dm.train_dataloader()]
    seen = torch.cat(blocks, dim=1).flatten(2)  # (k, n, features)

    def rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # a multiset of rows
        return torch.unique(t, dim=0, return_counts=True)

    for i in range(3):
        expected = rows(x[bootstrap_index(len(x), run.dm.seed, i)].flatten(1))
        for a, b in zip(rows(seen[i]), expected, strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(rows(seen[0])[1], rows(seen[1])[1])


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


# -- a bagged CNN run: its checkpoints, resume, and eq. 7.50 from the members it saved -------------
CKPT = ["trainer.checkpoint_min_interval=0", "trainer.checkpoint_every_min=0"]  # all written


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cnn") / "whole"
    return reglab.train(compose([*NETWORKS["cnn"], *CKPT], output_dir=run_dir)), run_dir


def test_eq_7_50_diagnostics_of_a_bagged_cnn_recomputed_from_best_ckpt(cnn_run, tmp_path):
    """v, c and the ensemble's error, computed here from the test predictions of the members
    saved in best.ckpt (θ*, what the run tested), equal the run's; eq. 7.50 is their identity."""
    metrics, run_dir = cnn_run
    run = build(compose(NETWORKS["cnn"], output_dir=tmp_path))
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    run.module.load_state_dict(state)
    x, y = run.dm.splits["test"]
    with torch.no_grad():
        p = run.module.net.eval()(x).softmax(-1)  # (k, n, classes)
    errors = p - F.one_hot(y, 10)  # εᵢ: probability vector − one-hot label
    k = len(errors)
    sq = errors.square().sum(-1)  # ‖εᵢ‖², (k, n)
    v = sq.mean().item()
    c = ((errors.sum(0).square().sum(-1) - sq.sum(0)).mean() / (k * (k - 1))).item()
    assert 0 < c < v
    assert metrics["ensemble/v"] == pytest.approx(v, rel=1e-4)
    assert metrics["ensemble/c"] == pytest.approx(c, rel=1e-4)
    measured = errors.mean(0).square().sum(-1).mean().item()  # of the averaged error
    assert metrics["ensemble/measured_mse"] == pytest.approx(measured, rel=1e-4)
    assert metrics["ensemble/predicted_mse"] == pytest.approx(v / k + (k - 1) * c / k, rel=1e-4)
    assert measured == pytest.approx(v / k + (k - 1) * c / k, rel=1e-4)
    accuracy = (p.mean(0).argmax(-1) == y).float().mean().item()  # the soft vote
    assert metrics["test/acc"] == pytest.approx(accuracy)
    for i in range(k):
        member = (p[i].argmax(-1) == y).float().mean().item()
        assert metrics[f"test/member_acc_{i}"] == pytest.approx(member)


def test_a_resumed_bagged_cnn_ends_where_the_uninterrupted_run_ends(cnn_run, tmp_path, monkeypatch):
    metrics, whole = cnn_run
    half = tmp_path / "half"
    reglab.train(compose([*NETWORKS["cnn"], *CKPT, "trainer.max_epochs=1"], output_dir=half))
    config = OmegaConf.load(half / "config.yaml")  # what `trainer.max_epochs=2` does beside
    config.trainer.max_epochs = 2  # resume= on the command line
    OmegaConf.save(config, half / "config.yaml")
    starts = []  # the step training starts from: the checkpoint's, not 0
    start = BaggingModule.on_train_start
    monkeypatch.setattr(
        BaggingModule,
        "on_train_start",
        lambda self: (starts.append(self.trainer.global_step), start(self)),
    )
    resumed = reglab.train(compose([f"resume={half}"], output_dir=half))
    assert starts == [metrics["stopped_step"] // 2] and starts[0] > 0
    assert resumed == metrics
    last = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (half, whole)]
    for name, value in last[1]["state_dict"].items():
        assert torch.equal(last[0]["state_dict"][name], value), name


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


@pytest.mark.parametrize("vectorized", ["true", "false"])
def test_the_final_validation_scores_the_ensemble(train_api, vectorized):
    """`val/final_loss` (the report's k-fold score) is the soft vote's J on the validation
    split with θ*, so (vectorized) it equals the best validation loss early stopping saw; it was a
    traceback (the members' (k, n, C) fed to the loss) on every bagged run."""
    metrics, _ = train_api(*SMALL, f"ensemble.vectorized={vectorized}")
    if vectorized == "true":  # (sequential members each stop on their own: no val/best)
        assert metrics["val/final_loss"] == pytest.approx(metrics["val/best"], rel=1e-5)
    assert 0 < metrics["val/final_loss"] < math.log(10) and 0.5 < metrics["val/final_acc"] <= 1
