"""The layout's promises: every `_target_` in conf/ names something that exists, the
engine's strategies come from those targets, and the import contracts hold."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import get_object

from reglab.config import ACTIVATIONS, CONFIG_DIR, compose
from reglab.models import ACTIVATIONS as BUILT_ACTIVATIONS

ROOT = Path(__file__).resolve().parents[1]
TARGET = re.compile(r"^\s*_target_:\s*(\S+)", re.M)


def conf_targets() -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(CONFIG_DIR)), target)
        for path in sorted(CONFIG_DIR.rglob("*.yaml"))
        for target in TARGET.findall(path.read_text())
    ]


@pytest.mark.parametrize(("path", "target"), conf_targets())
def test_every_target_in_conf_can_be_imported(path, target):
    assert callable(get_object(target)), f"{path}: {target}"


def test_config_knows_the_activations_the_models_build():
    """config.rules keeps its own list (config imports nothing of reglab): the two agree."""
    assert set(ACTIVATIONS) == set(BUILT_ACTIVATIONS)


@pytest.mark.parametrize(
    ("overrides", "objective", "ensemble"),
    [
        ([], "RegLabModule", "SingleModel"),
        (["model=multitask", "data=digits_multitask"], "MultiTaskModule", "SingleModel"),
        (["model=autoencoder"], "SemiSupervisedModule", "SingleModel"),
        (["experiment=semi_supervised"], "SemiSupervisedModule", "SingleModel"),
        (["ensemble=bagging"], "RegLabModule", "Bagging"),
    ],
)
def test_the_model_and_ensemble_configs_choose_the_strategy(overrides, objective, ensemble):
    cfg = compose(overrides)
    assert cfg.objective._target_.rsplit(".", 1)[-1] == objective
    assert cfg.ensemble._target_.rsplit(".", 1)[-1] == ensemble


def test_the_command_line_overrides_the_models_choice_of_objective():
    cfg = compose(["model=autoencoder", "objective=plain"])
    assert cfg.objective._target_.endswith(".RegLabModule")


def test_import_contracts_hold():
    """Layers only downward, no cycle (imports inside functions count), no strategy imported
    by the engine, no torch where the launching process looks: pyproject's contracts."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
