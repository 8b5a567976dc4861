"""Do a fixed list of runs write the same metrics.json, byte for byte, as a saved reference?

    python scripts/metrics_identity.py save DIR      # run every config, keep its metrics.json
    python scripts/metrics_identity.py compare DIR   # run them again, diff against DIR

For refactors that must not change behaviour: save on the old commit (e.g. from a
`git worktree`), compare on the new one, on the same machine (float rounding depends on
the CPU and the thread count). Every run goes through the command line, as a user's does;
each is short (a few epochs) but goes through its whole code path.
"""

import argparse
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["trainer.max_epochs=4", "callbacks.progress_bar=null", "logger=csv"]

RUNS: dict[str, list[str]] = {
    "default": [],
    "l2": ["regularizer=l2", "regularizer.alpha=1e-3"],
    "l1": ["regularizer=l1", "regularizer.alpha=1e-3"],
    "l1_proximal": ["regularizer=l1", "regularizer.alpha=1e-3", "regularizer.proximal=true"],
    "elastic_net": ["regularizer=elastic_net", "regularizer.alpha=1e-3"],
    "weight_decay": ["regularizer=weight_decay", "regularizer.alpha=1e-2"],
    "bagging": ["ensemble=bagging", "ensemble.members=3"],
    "bagging_sequential": ["ensemble=bagging", "ensemble.members=3", "ensemble.vectorized=false"],
    "mc_dropout": ["model.dropout.hidden=0.5", "inference=mc", "inference.samples=10"],
    "autoencoder": ["model=autoencoder", "data.labeled_fraction=0.1"],
    "multitask": ["model=multitask", "data=digits_multitask"],
    "retrain_all": ["protocol=retrain_all"],
    "continue_to_loss": ["protocol=continue_to_loss", "protocol.max_extra_steps=40"],
    "augmentation": ["augmentation=[affine,noise]"],
    "ridge": ["experiment=ridge", "trainer.max_epochs=50"],
    "sgd_cosine": ["optimizer=sgd", "scheduler=cosine"],
}
SWEEP = ["-m", "regularizer=l1,l2", "seed=0,1"]


def train(args: list[str], cwd: Path) -> None:
    cmd = [sys.executable, str(ROOT / "train.py"), *args]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")


def run_all(out: Path) -> None:
    """Every run of RUNS, and the sweep's jobs, into out/<name>.json."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in RUNS.items():
            run_dir = Path(tmp) / name
            train([*SHORT, *overrides, f"hydra.run.dir={run_dir}"], cwd=Path(tmp))
            (out / f"{name}.json").write_bytes((run_dir / "metrics.json").read_bytes())
            print(f"{name}: done", flush=True)
        sweep = Path(tmp) / "sweep"
        train([*SWEEP, *SHORT, f"hydra.sweep.dir={sweep}"], cwd=Path(tmp))
        for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
            (out / f"sweep_{job.name}.json").write_bytes((job / "metrics.json").read_bytes())
        print("sweep: done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("save", "compare"))
    parser.add_argument("dir", type=Path)
    args = parser.parse_args()
    if args.mode == "save":
        run_all(args.dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_all(Path(tmp))
        names = sorted(p.name for p in args.dir.glob("*.json"))
        same = [n for n in names if filecmp.cmp(args.dir / n, Path(tmp) / n, shallow=False)]
    for n in names:
        print(f"{'identical' if n in same else 'DIFFERENT'}  {n}")
    print(f"{len(same)} of {len(names)} metrics.json byte-identical")
    sys.exit(0 if len(same) == len(names) else 1)


if __name__ == "__main__":
    main()
