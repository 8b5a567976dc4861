"""k-fold cross-validation (`data.folds=k data.fold=i`) against scikit-learn.

The folds are KFold/StratifiedKFold's on the same non-test rows; a fold sweep's selection in
the report is the one GridSearchCV makes on the same folds and α grid for ridge regression
(α mapped as in test_sklearn_equivalence.py: Ridge(n_train·α/2)); Algorithm 7.2 then
retrains on every non-test row.
"""

import json

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from sklearn.datasets import make_regression
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import reglab
from reglab import instantiate, report
from reglab.config import ConfigError, compose
from reglab.data import DataModule
from reglab.engine.run import build

N, K = 125, 5


def labelled_rows(task: str):
    """A source whose first feature is the row number, so a split's rows can be read back."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, N) if task == "classification" else rng.normal(size=N)
    return lambda: (np.column_stack([np.arange(N), rng.normal(size=(N, 2))]), y)


def rows_of(dm: DataModule, split: str) -> np.ndarray:
    x = dm.splits[split][0][:, 0] * dm.feature_std[0] + dm.feature_mean[0]
    return np.sort(np.rint(x.numpy()).astype(int))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_fold_i_validates_and_the_folds_are_sklearns(task):
    source = labelled_rows(task)
    y = source()[1]
    stratify = y if task == "classification" else None
    rest = train_test_split(np.arange(N), test_size=25, random_state=3, stratify=stratify)[0]
    kind = StratifiedKFold if task == "classification" else KFold
    folds = list(kind(K, shuffle=True, random_state=3).split(rest, y[rest]))
    seen = []
    for i, (train, val) in enumerate(folds):
        dm = DataModule(source, task=task, folds=K, fold=i, seed=3).prepare()
        np.testing.assert_array_equal(rows_of(dm, "val"), np.sort(rest[val]))
        np.testing.assert_array_equal(rows_of(dm, "train"), np.sort(rest[train]))
        assert set(rows_of(dm, "test")).isdisjoint(rest)  # the test split stays as it was
        seen.append(rows_of(dm, "val"))
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(rest))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.folds=1"], "data.folds=1 is not allowed (allowed: null or an integer ≥ 2)"),
        (
            ["data.folds=5", "data.fold=5"],
            "data.fold=5 is not allowed (allowed: an integer in [0, 4])",
        ),
        (
            ["data.folds=5", "data.fold=-1"],
            "data.fold=-1 is not allowed (allowed: an integer in [0, 4])",
        ),
        (["data.fold=1"], "data.fold=1 is not allowed (allowed: 0 without data.folds)"),
    ],
)
def test_fold_keys_are_checked_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        build(compose(overrides, output_dir=tmp_path))
    assert str(err.value) == message


def test_retrain_all_with_folds_trains_on_every_non_test_row(tmp_path):
    """Algorithm 7.2 finds i* on fold 2, then trains fresh parameters on all folds."""
    overrides = ["data.folds=5", "data.fold=2", "data.val_fraction=0", "protocol=retrain_all"]
    fast = ["trainer.max_epochs=4", "callbacks.progress_bar=null", "logger=none", "threads=1"]
    run = build(compose([*overrides, *fast], output_dir=tmp_path))
    n_test, n_val, n_sub = (len(run.dm.splits[s][1]) for s in ("test", "val", "train"))
    assert n_test == round(0.2 * 1797) and n_val + n_sub == 1797 - n_test
    assert n_val in (1437 // 5, 1437 // 5 + 1)  # one fold of the 1437 non-test rows
    outcome = instantiate(run.cfg.protocol).run(run)
    assert run.dm.n_train == 1797 - n_test  # phase 2: every non-test row
    assert outcome.metrics["protocol/retrain_steps"] == outcome.metrics["best_step"]


# -- the report's selection is GridSearchCV's ------------------------------------------------
ALPHAS = ("0.01", "0.1", "1.0")
SYNTHETIC = {"n_samples": N, "n_features": 40, "n_informative": 5, "noise": 30}
RIDGE = (
    "data=synthetic",
    "data.task=regression",
    *(f"data.source.{k}={v}" for k, v in SYNTHETIC.items()),
    f"data.folds={K}",
    "model=linear",
    "regularizer=l2",
    "optimizer=sgd",
    "optimizer.momentum=0",
    "optimizer.lr=0.3",
    "trainer.max_epochs=200",
    "+trainer.limit_val_batches=0",  # the validation fold is measured once, at the end
    "data.batch_size=100000",  # full batch: gradient descent to Ridge's minimizer
    "callbacks.early_stopping=null",
    "callbacks.model_checkpoint=null",
    "callbacks.weight_histograms=null",
    "callbacks.progress_bar=null",
    "logger=none",
    "threads=1",
)


def fold_sweep(sweep):
    """regularizer.alpha=ALPHAS × data.fold=range(K), trained in-process into job
    directories like a `-m` sweep's (.hydra/overrides.yaml and config.yaml beside the run)."""
    for num, (alpha, fold) in enumerate((a, f) for a in ALPHAS for f in range(K)):
        typed = [f"regularizer.alpha={alpha}", f"data.fold={fold}"]
        cfg = compose([*RIDGE, *typed], output_dir=sweep / str(num))
        reglab.train(cfg)
        (sweep / str(num) / ".hydra").mkdir()
        (sweep / str(num) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(typed))
        cfg.output_dir = "${hydra:runtime.output_dir}"  # as Hydra saves it: unresolved
        OmegaConf.save(cfg, sweep / str(num) / ".hydra" / "config.yaml")


def test_fold_sweep_selects_what_grid_search_cv_selects(tmp_path):
    fold_sweep(tmp_path)
    doc = json.loads(report.write_report(tmp_path).with_name("report.json").read_text())
    x, y = make_regression(**SYNTHETIC, random_state=0)
    rest = train_test_split(np.arange(N), test_size=25, random_state=0)[0]
    n_train = len(rest) * (K - 1) // K  # 80 in every fold: one Ridge α per reglab α
    grid = {"ridge__alpha": [n_train * float(a) / 2 for a in ALPHAS]}
    cv = KFold(K, shuffle=True, random_state=0)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), Ridge()), grid, cv=cv, scoring="neg_mean_squared_error"
    ).fit(x[rest], y[rest])
    chosen = ALPHAS[grid["ridge__alpha"].index(search.best_params_["ridge__alpha"])]
    assert chosen == "0.1"  # inside the grid, not at an edge
    assert doc["metric"] == "val/final_mse" and doc["folds"] == K
    assert doc["best"]["regularizer.alpha"] == chosen
    means = [e["mean"] for e in doc["configurations"]]
    np.testing.assert_allclose(means, -search.cv_results_["mean_test_score"], rtol=2e-3)
    assert all(e["n"] == K and e["test"]["metric"] == "test/mse" for e in doc["configurations"])
    md = (tmp_path / "report.md").read_text()
    assert f"selected by {K}-fold cross-validation" in md and "test/mse (mean ± std)" in md
