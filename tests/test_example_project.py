"""examples/my_project, a user's project outside the package (its own conf/, network and data
source), trains through `hydra.searchpath` as its README says: one run of the command line."""

import os

import pytest
import torch
from conftest import ROOT, read_metrics, run_cli
from omegaconf import OmegaConf

PROJECT = ROOT / "examples" / "my_project"


@pytest.mark.slow  # a process of its own: torch and Lightning load again
def test_the_example_project_trains_its_own_network_on_its_own_data(tmp_path):
    run_dir = tmp_path / "run"
    path = os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])
    proc = run_cli(
        f"hydra.searchpath=[file://{PROJECT / 'conf'}]", "model=my_net", "data=my_data",
        "trainer.max_epochs=5", "optimizer.lr=0.01", "callbacks.progress_bar=null",
        "logger=none", "threads=1",
        f"hydra.run.dir={run_dir}",
        cwd=PROJECT, env={"PYTHONPATH": path},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.model._target_ == "my_project.net.WaveNet1d"
    assert config.data.source._target_ == "my_project.source.waves"
    # the user's network was trained: its parameters are in the checkpoint, sized by the data
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert state["net.body.0.weight"].shape == (16, 1, 5)  # Conv1d(1, width, kernel_size)
    assert state["net.head.weight"].shape == (3, 64)  # 3 classes of waves
    assert read_metrics(run_dir)["test/acc"] > 0.6  # 3 classes: chance is 1/3
    assert "net.body.0.weight" in proc.stdout + proc.stderr  # the run's log lists its penalties
