"""Data augmentation: on training batches only, in the data's own units, seeded."""

import pytest
import torch
from kornia.augmentation import RandomAffine

from reglab import instantiate
from reglab.config import ConfigError, compose
from reglab.data import Augmentation, GaussianNoise
from reglab.engine.run import build, build_augmentation

QUIET = ["callbacks.progress_bar=null", "logger=none", "threads=1"]


def test_gaussian_noise_has_the_configured_standard_deviation():
    torch.manual_seed(0)
    x = torch.zeros(100_000)
    assert GaussianNoise(0.3)(x).std().item() == pytest.approx(0.3, rel=0.02)


def test_image_transforms_act_in_pixel_units_not_on_standardized_features():
    """A blank image stays blank under any affine map (zero padding, zero background); in
    standardized units "blank" is a different value per pixel and would be smeared."""
    dm = instantiate(compose([], output_dir="unused").data).prepare()
    augment = Augmentation(
        [RandomAffine(degrees=30, translate=(0.2, 0.2), p=1.0)],
        image_shape=dm.image_shape,
        mean=dm.feature_mean,
        std=dm.feature_std,
    )
    blank = (torch.zeros(4, 64) - dm.feature_mean) / dm.feature_std  # raw 0 everywhere
    raw = augment(blank) * dm.feature_std + dm.feature_mean
    assert raw.abs().max().item() < 1e-4
    digits = dm.splits["train"][0][:8]
    moved = augment(digits)
    assert moved.shape == digits.shape and not torch.allclose(moved, digits)


def test_image_transforms_need_image_data(tmp_path):
    with pytest.raises(ConfigError, match="augmentation=affine"):
        build(compose(["augmentation=affine", "data=diabetes"], output_dir=tmp_path))
    with pytest.raises(ValueError, match="image_shape"):
        Augmentation([RandomAffine(degrees=10)], image_shape=None)


class HalveWidth(torch.nn.Module):
    """A user's transform that drops every other column: not an example's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::2]


@pytest.mark.parametrize(
    "overrides, words",
    [
        # CIFAR's 32×32 crop of 8×8 digits: used to end the first step in a traceback
        (["model=cnn", "augmentation=crop_flip"], ["augmentation.transforms.crop", "[8, 8]"]),
        (
            [
                "augmentation=noise",
                f"+augmentation.transforms.halve._target_={__name__}.HalveWidth",
            ],
            ["augmentation.transforms.halve", "HalveWidth", "returns shape (2, 1, 8, 4)"],
        ),
    ],
    ids=["cifar-crop-on-digits", "user-transform"],
)
def test_a_transform_that_does_not_keep_the_shape_is_one_line(tmp_path, overrides, words):
    with pytest.raises(ConfigError) as err:
        build(compose([*QUIET, *overrides], output_dir=tmp_path))
    message = str(err.value)
    assert "\n" not in message and "allowed" in message, message
    for word in words:
        assert word in message, (word, message)


def test_checking_the_transforms_draws_nothing_from_the_rng(tmp_path):
    cfg = compose([*QUIET, "model=cnn", "augmentation=[crop_flip,noise]"], output_dir=tmp_path)
    cfg.augmentation.transforms.crop.size = [8, 8]
    dm = instantiate(cfg.data).prepare()
    state = torch.get_rng_state()
    augment = build_augmentation(cfg, dm)
    assert len(augment) == 3 and torch.equal(torch.get_rng_state(), state)


def test_train_size_keeps_a_seeded_stratified_subset(tmp_path):
    dm = build(compose(["data.train_size=200", *QUIET], output_dir=tmp_path)).dm
    _, y = dm.splits["train"]
    assert len(y) == 200 and torch.bincount(y).min() >= 18  # ~20 of each digit
    with pytest.raises(ConfigError, match=r"data\.train_size=5000"):
        build(compose(["data.train_size=5000"], output_dir=tmp_path))


def test_augmentation_runs_on_training_batches_only(tmp_path):
    run = build(
        compose(
            ["augmentation=[affine,noise]", "trainer.max_epochs=2", *QUIET], output_dir=tmp_path
        )
    )
    rows = {"fit": 0, "eval": 0}
    original = run.module.augment.forward

    def counting(x):
        rows["eval" if run.trainer.validating or run.trainer.testing else "fit"] += len(x)
        return original(x)

    run.module.augment.forward = counting
    run.trainer.fit(run.module, datamodule=run.dm)
    run.trainer.test(run.module, datamodule=run.dm, verbose=False)
    assert rows["fit"] == 2 * run.dm.n_train and rows["eval"] == 0  # every training row, twice


def test_same_seed_same_augmented_run(train_api):
    a, _ = train_api("augmentation=[affine,erasing,noise]", "trainer.max_epochs=3", *QUIET)
    b, _ = train_api("augmentation=[affine,erasing,noise]", "trainer.max_epochs=3", *QUIET)
    c, _ = train_api("augmentation=none", "trainer.max_epochs=3", *QUIET)
    assert a == b and a != c


def test_augmented_samples_are_shown_in_tensorboard(train_api):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = train_api("augmentation=affine", "debug=fast", "callbacks.progress_bar=null")
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert {"augmentation/original", "augmentation/augmented"} <= set(events.Tags()["images"])


@pytest.mark.slow
def test_affine_augmentation_beats_none_on_200_digits(train_api):
    """§7.4's claim, over three seeds: more (transformed) data, better generalization."""
    gains = []
    for seed in range(3):
        augmented, _ = train_api("experiment=small_data_augmentation", f"seed={seed}", *QUIET)
        control, _ = train_api(
            "experiment=small_data_augmentation", "augmentation=none", f"seed={seed}", *QUIET
        )
        gains.append(augmented["test/acc"] - control["test/acc"])
    assert sum(gains) / 3 > 0.005
