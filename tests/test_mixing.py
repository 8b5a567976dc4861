"""Label mixing: mixup's and cutmix's examples are blends of two training examples, and their
loss is the convex combination of the two labels' losses."""

import pytest
import torch
import torch.nn.functional as F
from kornia.augmentation import RandomCutMixV2

from reglab.data import Augmentation
from reglab.data.mixing import MixUp, kornia_mix, mix_targets


def test_mixup_blends_each_example_with_its_partner_by_a_beta_draw():
    torch.manual_seed(0)
    x = torch.randn(20_000, 3)
    mixed, partner, lam = MixUp(alpha=0.4)(x)
    torch.testing.assert_close(mixed, (1 - lam[:, None]) * x + lam[:, None] * x[partner])
    assert sorted(partner.tolist()) == list(range(len(x)))  # a permutation of the batch
    assert lam.min() >= 0 and lam.max() <= 1
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * 0.4 + 1)), rel=0.05)  # Beta(α, α)


def test_the_mixed_loss_is_the_convex_combination_of_the_two_labels_losses():
    torch.manual_seed(1)
    logits, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
    partner, lam = torch.randperm(8), torch.rand(8)
    q = mix_targets(y, partner, lam, classes=4)
    per_example = (1 - lam) * F.cross_entropy(logits, y, reduction="none") + lam * F.cross_entropy(
        logits, y[partner], reduction="none"
    )
    assert F.cross_entropy(logits, q).item() == pytest.approx(per_example.mean().item(), rel=1e-6)
    values = torch.randn(8, 2)  # regression: the targets themselves are blended
    torch.testing.assert_close(
        mix_targets(values, partner, lam, None),
        (1 - lam[:, None]) * values + lam[:, None] * values[partner],
    )


def test_cutmix_pastes_a_box_of_the_partner_whose_area_is_lambda():
    torch.manual_seed(2)
    images = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 1, 8, 8).contiguous()
    cutmix = RandomCutMixV2(beta=1.0, use_correct_lambda=True, data_keys=["input", "class"])
    mixed, partner, lam = kornia_mix(cutmix, images)
    for i in range(16):
        own = mixed[i] == i
        pasted = mixed[i] == partner[i]
        if partner[i] != i:
            assert bool((own | pasted).all())  # every pixel is its own or its partner's
            assert pasted.float().mean().item() == pytest.approx(lam[i].item(), abs=1e-6)
    assert (lam > 0).sum() >= 8


def test_augmentation_mixes_after_its_other_transforms():
    augment = Augmentation({"mixup": MixUp(1.0)}, image_shape=None)
    assert len(augment) == 1 and not len(augment.transforms)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    mixed, q = augment.mix(augment(x), y, classes=3)
    assert q.shape == (5, 3) and torch.allclose(q.sum(-1), torch.ones(5))
    assert not torch.allclose(mixed, x)
    with pytest.raises(ValueError, match="image_shape"):
        Augmentation(
            {"cutmix": RandomCutMixV2(use_correct_lambda=True, data_keys=["input", "class"])}
        )
