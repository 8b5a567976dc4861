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


def doc_examples() -> list[tuple[str, str, str]]:
    """(language, path, code) of each example in docs/architecture.md's "Where things go"."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc[doc.index("## Where things go") :]
    return re.findall(r"```(python|yaml)\n# (\S+)[^\n]*\n(.*?)```", section, re.S)


def test_the_where_things_go_examples_train(tmp_path, monkeypatch):
    """Each example, placed where the page says, trains through `GROUP=NAME`: the page is true."""
    import importlib
    import types

    import torch

    import reglab

    conf = tmp_path / "conf"
    for lang, path, code in doc_examples():
        if lang == "yaml":
            target = conf / Path(path).relative_to("conf")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code)
            continue
        name = path.removeprefix("src/").removesuffix(".py").replace("/", ".")
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:  # a new file: a new module
            module = types.ModuleType(name)
            monkeypatch.setitem(sys.modules, name, module)
        namespace = vars(module)
        for key in ("nn", "torch", "Tensor"):
            namespace.setdefault(key, getattr(torch, key, torch))
        added = {}
        exec(compile(code, path, "exec"), {**namespace}, added)
        for key, value in added.items():
            monkeypatch.setattr(module, key, value, raising=False)
    groups = sorted({f"{p.parent.name}={p.stem}" for p in conf.rglob("*.yaml")})
    assert groups == ["data=wine", "model=wide", "protocol=fixed_steps", "regularizer=cauchy"]
    search = f"hydra.searchpath=[file://{conf}]"
    quick = ["trainer.max_epochs=2", "callbacks.progress_bar=null", "logger=csv"]
    steps = {}
    for group in groups:
        extra = ["protocol.steps=5"] if group.startswith("protocol") else []
        cfg = reglab.compose([search, group, *quick, *extra], output_dir=tmp_path / group)
        steps[group] = reglab.train(cfg)["stopped_step"]
    assert steps["protocol=fixed_steps"] == 5  # FixedSteps took exactly its steps
    assert steps["data=wine"] == 2 * 4  # 2 epochs of 107 training wines in batches of 32
    assert all(s > 0 for s in steps.values()), steps
