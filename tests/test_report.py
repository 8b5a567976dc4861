"""The sweep report (`reglab.report`): report.md and report.png in a sweep directory.

Most tests build sweep directories by hand (`<job>/.hydra/overrides.yaml`, metrics.json,
run.json, train.log), so every number the table shows is checked against one computed here
with `statistics.mean` and `statistics.stdev` (the sample std, n − 1, as the report says).
The slow tests run `python -m reglab.report` and real `train.py -m` sweeps with the Hydra
callback, as a user would.
"""

import json
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from sweep_dirs import cells, parse_mean_std, png_size, table, unbold, write_job

from reglab import report

REGULARIZERS = ("none", "l1")  # in the order typed: the report keeps it
ALPHAS = ("0.01", "0.001", "0.0001")  # typed in descending order: the report sorts numbers
SEEDS = (0, 1, 2)
CALLBACK = "++hydra.callbacks.report._target_=reglab.report.SweepReport"  # + or replace


# -- building sweeps by hand -----------------------------------------------------------------------
def fake_metrics(value: float, seed: int, key: str = "test/acc") -> dict:
    return {
        key: value,
        "test/loss": 1.5 - value,
        "val/best": 1.4 - value,
        "best_step": 100 + 17 * seed,
        "stopped_step": 300,
        "weights/l1_norm": 10.0,
        "weights/l2_norm": 3.0,
        "weights/sparsity": 0.05 * seed,
    }


def fake_acc(regularizer: str, alpha: str, seed: int) -> float:
    """A made-up accuracy: l1 best at α = 1e-3, seeds scattered irregularly."""
    peak = {"none": 0.90, "l1": 0.95}[regularizer] - (0.04 if alpha == "0.01" else 0.0)
    bump = 0.03 if (regularizer, alpha) == ("l1", "0.001") else 0.0
    return peak + bump + (0.0123, -0.0071, 0.0035)[seed] * (1 + ALPHAS.index(alpha))


def run_seconds(num: int) -> float:
    return 1.0 + 0.25 * (num % 4)


@pytest.fixture
def grid(tmp_path) -> Path:
    """regularizer=none,l1 regularizer.alpha=0.01,0.001,0.0001 seed=0,1,2 debug=fast."""
    sweep = tmp_path / "2026-01-02" / "03-04-05"
    num = 0
    for reg in REGULARIZERS:
        for alpha in ALPHAS:
            for seed in SEEDS:
                overrides = [f"regularizer={reg}", f"regularizer.alpha={alpha}", f"seed={seed}"]
                metrics = fake_metrics(fake_acc(reg, alpha, seed), seed)
                run = {"status": "completed", "seconds": run_seconds(num), "fit_seconds": 0.5}
                write_job(sweep, num, [*overrides, "debug=fast"], metrics, run)
                num += 1
    return sweep


def make(sweep: Path, errors: dict | None = None) -> tuple[str, list[dict[str, str]]]:
    md = report.write_report(sweep, errors).read_text()
    return md, table(md)


METRIC = "test/acc (mean ± std)"


# -- the table -------------------------------------------------------------------------------------
def test_one_row_per_configuration_sorted_by_the_swept_keys(grid):
    md, rows = make(grid)
    assert list(rows[0]) == [
        "regularizer",
        "regularizer.alpha",
        METRIC,
        "best step",
        "sparsity",
        "time / run",
        "runs",
    ]  # seed is what the statistics are over; debug=fast is the same in every job
    keys = [(unbold(r["regularizer"]), unbold(r["regularizer.alpha"])) for r in rows]
    assert keys == [(reg, a) for reg in REGULARIZERS for a in sorted(ALPHAS, key=float)]
    assert all(unbold(r["runs"]) == "3" for r in rows)
    assert "- **fixed:** `debug=fast`" in md


def test_mean_and_sample_std_over_seeds(grid):
    _, rows = make(grid)
    for row in rows:
        reg, alpha = unbold(row["regularizer"]), unbold(row["regularizer.alpha"])
        accs = [fake_acc(reg, alpha, s) for s in SEEDS]
        assert re.fullmatch(r"0\.\d{4} ± 0\.\d{4}", unbold(row[METRIC])), row[METRIC]
        mean, std = parse_mean_std(row[METRIC])
        assert mean == pytest.approx(statistics.mean(accs), abs=5e-5)
        assert std == pytest.approx(statistics.stdev(accs), abs=5e-5)  # n − 1, not pstdev
        assert std != pytest.approx(statistics.pstdev(accs), abs=5e-5)
        steps = [fake_metrics(0, s)["best_step"] for s in SEEDS]
        assert unbold(row["best step"]) == f"{statistics.mean(steps):.0f}"
        sparsity = statistics.mean(fake_metrics(0, s)["weights/sparsity"] for s in SEEDS)
        assert unbold(row["sparsity"]) == f"{100 * sparsity:.3g} %"
        first = 3 * (len(ALPHAS) * REGULARIZERS.index(reg) + ALPHAS.index(alpha))
        seconds = statistics.mean(run_seconds(n) for n in range(first, first + 3))
        assert unbold(row["time / run"]) == f"{seconds:.1f} s"


def test_best_configuration_is_bold_and_named_in_the_header(grid):
    """The control is the first regularizer=none row (α = 1e-4); l1 at α = 1e-3 beats it by
    ~0.077 at every seed, with a spread that makes it significant even after Holm."""
    md, rows = make(grid)
    means = {
        (r, a): statistics.mean(fake_acc(r, a, s) for s in SEEDS)
        for r in REGULARIZERS
        for a in ALPHAS
    }
    best = max(means, key=means.get)
    assert best == ("l1", "0.001")
    bold = [r for r in rows if r["regularizer"].startswith("**")]
    assert len(bold) == 1
    assert all(c.startswith("**") and c.endswith("**") for c in bold[0].values())
    assert (unbold(bold[0]["regularizer"]), unbold(bold[0]["regularizer.alpha"])) == best
    assert "- **best:** **regularizer=l1, regularizer.alpha=0.001**" in md
    assert "better than the control by +0.07" in md
    assert "- **control:** regularizer=none, regularizer.alpha=0.0001" in md


def test_header_names_the_sweep_jobs_metric_and_direction(grid):
    md, _ = make(grid)
    assert md.startswith("# Sweep report: 2026-01-02/03-04-05\n")
    assert f"- **sweep:** `{grid}`" in md
    assert "- **jobs:** 18: 18 finished, 0 failed (6 configurations;" in md
    assert "`test/acc`, mean ± std over seeds 0, 1, 2 (sample std, n − 1); higher is better" in md
    assert "![test/acc against the swept keys](report.png)" in md
    assert "Failed jobs" not in md


def test_regression_reports_mse_and_lower_is_better(tmp_path):
    mse = {("0.1", 0): 30.0, ("0.1", 1): 34.0, ("1", 0): 21.5, ("1", 1): 20.5, ("10", 0): 40.0}
    for num, ((alpha, seed), value) in enumerate(mse.items()):
        overrides = ["data=diabetes", f"regularizer.alpha={alpha}", f"seed={seed}"]
        write_job(tmp_path, num, overrides, fake_metrics(value, seed, "test/mse"), {"seconds": 1})
    md, rows = make(tmp_path)
    assert "`test/mse`" in md and "lower is better" in md
    cells_ = {unbold(r["regularizer.alpha"]): unbold(r["test/mse (mean ± std)"]) for r in rows}
    assert list(cells_) == ["0.1", "1", "10"]
    assert (
        cells_["1"] == f"{statistics.mean([21.5, 20.5]):.2f} ± {statistics.stdev([21.5, 20.5]):.2f}"
    )
    assert cells_["10"] == "40.00"  # one seed: no std
    # α = 1 has the lowest mean, but over 2 seeds its paired difference from the control
    # (α = 0.1: −8.5 and −13.5) has p ≈ 0.14: no row is bold, none is called best
    assert not [r for r in rows if r["regularizer.alpha"].startswith("**")]
    assert "- **best:** none: no configuration differs from the control at 5 %" in md


def test_without_a_test_split_the_monitored_best_is_reported(tmp_path):
    for num, (mode, value) in enumerate([("max", 0.7), ("max", 0.9)]):
        metrics = {k: v for k, v in fake_metrics(0, 0).items() if not k.startswith("test/")}
        config = {"monitor": "val/acc", "monitor_mode": mode, "optimizer": {"lr": num + 1}}
        overrides = [f"optimizer.lr={num + 1}"]
        write_job(tmp_path, num, overrides, {**metrics, "val/best": value}, config=config)
    md, rows = make(tmp_path)
    assert "`val/best`" in md and "higher is better" in md  # monitor_mode: max
    assert [r["val/best (mean ± std)"] for r in rows] == ["0.7000", "0.9000"]  # 1 seed: no test


def test_multi_task_sweep_compares_tasks_not_summed_losses(tmp_path):
    """Runs on all tasks and on one task alone sum different task losses, so no row is
    best overall; the per-task table shows each task's mean ± std with its best in bold."""
    runs = {  # use_tasks → per-seed metrics
        "null": [
            {"test/a/mse": 0.60, "test/b/acc": 0.58},
            {"test/a/mse": 0.64, "test/b/acc": 0.56},
        ],
        "[a]": [{"test/a/mse": 0.70}, {"test/a/mse": 0.72}],
        "[b]": [{"test/b/acc": 0.50}, {"test/b/acc": 0.54}],
    }
    num = 0
    for tasks, per_seed in runs.items():
        for seed, metrics in enumerate(per_seed):
            loss = {"test/loss": sum(v for k, v in metrics.items() if k.endswith("mse"))}
            overrides = [f"data.use_tasks={tasks}", f"seed={seed}"]
            write_job(tmp_path, num, overrides, {**metrics, **loss}, {"seconds": 1})
            num += 1
    md = report.write_report(tmp_path).read_text()
    assert "- **best:**" not in md and "**multi-task:**" in md
    main, per_task = md.split("## Per task (test, mean ± std)")
    assert not [
        c
        for line in main.splitlines()
        if line.startswith("| ")
        for c in cells(line)
        if c.startswith("**")
    ]
    rows = table(per_task)
    assert [r["data.use_tasks"] for r in rows] == ["null", "[a]", "[b]"]
    mse = lambda tasks: statistics.mean(m["test/a/mse"] for m in runs[tasks])  # noqa: E731
    assert parse_mean_std(rows[0]["test/a/mse"])[0] == pytest.approx(mse("null"))
    assert rows[0]["test/a/mse"].startswith("**") and rows[0]["test/b/acc"].startswith("**")
    assert rows[1]["test/b/acc"] == rows[2]["test/a/mse"] == "—"
    assert not rows[1]["test/a/mse"].startswith("**") and not rows[2]["test/b/acc"].startswith("**")


def test_failed_jobs_are_listed_with_their_error_and_overrides(grid):
    base = ["regularizer=l2", "regularizer.alpha=0.001", "debug=fast"]
    write_job(
        grid,
        18,
        [*base, "seed=0"],
        fake_metrics(0.5, 0),
        {"status": "failed", "error": "loss is nan at step 12", "seconds": 2.0},
    )
    log = (
        "\n".join(f"[t][reglab][INFO] line {i}" for i in range(20))
        + "\nRuntimeError: out of memory\n"
    )
    write_job(grid, 19, [*base, "seed=1"], log=log)
    write_job(grid, 20, [*base, "seed=2"])  # nothing but .hydra: failed before training
    write_job(grid, 21, ["regularizer=l1", "regularizer.alpha=0.001", "seed=3", "debug=fast"])
    md, rows = make(grid)

    assert "- **jobs:** 22: 18 finished, 4 failed" in md
    failed = md[md.index("## Failed jobs (4)") :]
    assert "- job `18`: `regularizer=l2 regularizer.alpha=0.001 debug=fast seed=0`" in failed
    assert "loss is nan at step 12" in failed
    assert "RuntimeError: out of memory" in failed and "line 19" in failed
    assert "line 0\n" not in failed  # the tail of train.log, not all of it
    assert "- job `20`:" in failed and "no metrics.json, run.json or log lines" in failed
    # the failed metrics.json of job 18 is not averaged in
    l2 = [r for r in rows if r["regularizer"] == "l2"]
    assert l2 == [
        {
            **l2[0],
            METRIC: "failed",
            "best step": "—",
            "sparsity": "—",
            "time / run": "—",
            "runs": "0 of 3",
        }
    ]
    l1 = [
        r
        for r in rows
        if unbold(r["regularizer"]) == "l1" and unbold(r["regularizer.alpha"]) == "0.001"
    ]
    assert unbold(l1[0]["runs"]) == "3 of 4"


def test_errors_from_the_callback_fill_in_for_jobs_that_recorded_none(grid):
    job = write_job(grid, 18, ["regularizer=l1", "regularizer.alpha=-1", "seed=0", "debug=fast"])
    md, _ = make(grid, {str(job.resolve()): "ConfigError: regularizer.alpha=-1 is not allowed"})
    assert "ConfigError: regularizer.alpha=-1 is not allowed" in md


# -- formatting ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mean", "std", "text"),
    [
        (0.97214, 0.00431, "0.9721 ± 0.0043"),
        (0.0123, 0.0004, "0.01230 ± 0.00040"),
        (2891.2, 120.3, "2891 ± 120"),
        (12.3456, 0.5, "12.35 ± 0.50"),
        (0.5, None, "0.5000"),
        (3.2e-5, 1e-6, "3.200e-05 ± 1.0e-06"),
    ],
)
def test_numbers_are_compact(mean, std, text):
    assert report.fmt_mean_std(mean, std) == text


# -- report.png ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "scale"),
    [
        ([1e-4, 1e-3, 1e-2], "log"),  # exactly 2 decades
        ([1e-5, 3e-4], "linear"),  # 1.5 decades
        ([0.1, 0.2, 0.5, 1.0], "linear"),
        ([0.0, 1e-4, 1e-2], "symlog"),  # 0 cannot sit on a log axis
        ([-1.0, 1e-4, 1e-2], "linear"),
        ([1e-3], "linear"),
    ],
)
def test_log_scale_when_values_span_two_decades(values, scale):
    assert report.x_scale(values) == scale


def test_plot_has_one_line_per_regularizer_on_a_log_axis(grid):
    fig = report.figure(report.load_sweep(grid))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "regularizer.alpha (log scale)"
    assert "test accuracy" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [*REGULARIZERS, "best"]
    assert ax.get_legend().get_title().get_text() == "regularizer"
    assert [t.get_text() for t in ax.get_xticklabels()] == sorted(ALPHAS, key=float)


def test_report_png_is_a_png_of_slide_size(grid):
    report.write_report(grid)
    width, height = png_size(grid / "report.png")
    assert 700 <= width <= 1400 and 300 <= height <= 1200, (width, height)


def sweep_of(tmp_path: Path, configs: list[list[str]], seeds=(0, 1)) -> Path:
    """One job per configuration and seed, with made-up accuracies (seed effects that
    differ between configurations, so paired differences have a spread)."""
    num = 0
    for i, overrides in enumerate(configs):
        for seed in seeds:
            metrics = fake_metrics(0.8 + 0.01 * i + 0.003 * seed * (1 + i % 3), seed)
            write_job(tmp_path, num, [*overrides, f"seed={seed}"], metrics, {"seconds": 1.5})
            num += 1
    return tmp_path


ROBUST = {
    "one job": ([["debug=fast"]], (0,)),
    "no overrides but the seed": ([[]], (0, 1, 2)),
    "categorical only": (
        [
            [f"regularizer={r}", f"optimizer={o}"]
            for r in ("none", "l1", "l2")
            for o in ("adam", "sgd")
        ],
        (0, 1),
    ),
    "a key with one value": (
        [[f"regularizer={r}", "regularizer.alpha=0.001"] for r in ("none", "l2")],
        (0, 1),
    ),
    "two numeric keys": (
        [
            [f"regularizer.alpha={a}", f"optimizer.lr={lr}"]
            for a in ("0", "0.001", "0.1")
            for lr in ("0.01", "0.1")
        ],
        (0, 1),
    ),
}


@pytest.mark.parametrize("case", list(ROBUST))
def test_any_sweep_shape_gives_a_table_and_a_plot(tmp_path, case):
    configs, seeds = ROBUST[case]
    sweep = sweep_of(tmp_path, configs, seeds)
    md, rows = make(sweep)
    loaded = report.load_sweep(sweep)
    assert len(rows) == len(configs)
    assert [unbold(r["runs"]) for r in rows] == [str(len(seeds))] * len(configs)
    bold = [r for r in rows if next(iter(r.values())).startswith("**")]
    best = json.loads((sweep / "report.json").read_text())["best"]
    assert len(bold) == (best is not None)  # bold only what report.json calls best
    assert best is None  # 2 seeds and small differences: nothing beats the control at 5 %
    width, height = png_size(sweep / "report.png")
    assert 500 <= width <= 1400 and 200 <= height <= 1400, (width, height)
    axes = [ax for ax in report.figure(loaded).axes if ax.get_visible()]
    if case == "two numeric keys":
        assert [ax.get_xlabel() for ax in axes] == ["regularizer.alpha (log scale)", "optimizer.lr"]
        assert axes[0].get_xscale() == "symlog"  # 0 and two decades
    else:  # nothing numeric to plot against: one bar per configuration
        (ax,) = axes
        assert len(ax.patches) == len(configs)
        assert ax.figure.legends and ax.get_title() and ax.get_xlabel()
    if case == "a key with one value":
        assert next(iter(rows[0])) == "regularizer" and "regularizer.alpha" not in rows[0]
        assert "- **fixed:** `regularizer.alpha=0.001`" in md
    if case in ("one job", "no overrides but the seed"):
        assert next(iter(rows[0])) == "configuration"
        assert "1 configuration;" in md and "**best:**" not in md


# -- bad input, in-process ------------------------------------------------------------------------
def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name → (arguments, words the one error line must hold)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    write_job(tmp_path / "single", 0, ["seed=0"], fake_metrics(0.9, 0))
    (tmp_path / "single" / "0").rename(tmp_path / "run")  # a single run: .hydra/ at its top
    for num in range(2):
        write_job(
            tmp_path / "allfailed", num, [f"seed={num}"], run={"status": "failed", "error": "boom"}
        )
    return {
        "missing": ([str(tmp_path / "nope")], ["nope", "no such directory", "sweep directory"]),
        "file": ([str(tmp_path / "file.txt")], ["file.txt", "not a directory"]),
        "empty": (
            [str(tmp_path / "empty")],
            ["empty", "not a sweep directory", ".hydra/overrides.yaml"],
        ),
        "single run": ([str(tmp_path / "run")], ["run", "single run", "0/.hydra"]),
        "no finished jobs": (
            [str(tmp_path / "allfailed")],
            ["allfailed", "no finished jobs", "metrics.json", "boom"],
        ),
    }


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, capsys):
    for name, (args, words) in bad_inputs(tmp_path).items():
        assert report.main(args) == 1, name
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, (name, err)
        assert err.startswith("reglab.report: error: "), err
        for word in words:
            assert word in err, (name, word, err)
    assert not list(tmp_path.rglob("report.*"))


def test_no_arguments_prints_the_usage(capsys):
    assert report.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == report.USAGE + "\n"
    assert err.startswith("usage: python -m reglab.report SWEEP_DIR")
    assert report.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith(report.USAGE + "\n")


# -- the callback, in-process ---------------------------------------------------------------------
def test_callback_writes_once_and_prints_the_path(grid, capsys):
    callback = report.SweepReport()
    callback.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(grid)}}}))
    job = write_job(grid, 18, ["regularizer=l1", "regularizer.alpha=-1", "seed=0", "debug=fast"])
    config = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job)}}})
    failed = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("alpha=-1 is bad"))
    callback.on_job_end(config, failed)
    callback.on_job_end(config, JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))
    callback.on_multirun_end(OmegaConf.create({}))
    callback._at_exit()  # what atexit would call: the report is written once
    out = capsys.readouterr().out
    assert out == f"sweep report: {grid / 'report.md'} (plot: {grid / 'report.png'})\n"
    assert "ValueError: alpha=-1 is bad" in (grid / "report.md").read_text()


def test_callback_never_raises_and_warns_in_one_line(tmp_path, capsys, caplog):
    callback = report.SweepReport()
    callback.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    callback.on_multirun_end(OmegaConf.create({}))
    assert capsys.readouterr().out == ""
    (warning,) = caplog.records
    assert warning.levelname == "WARNING" and "\n" not in warning.getMessage()
    assert str(tmp_path) in warning.getMessage()


# -- as a user runs it (subprocesses) --------------------------------------------------------------
def run_report(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run(
        [sys.executable, "-m", "reglab.report", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, list[str]]]:
    base = tmp_path_factory.mktemp("report_cli")
    cases = {
        k: v
        for k, v in bad_inputs(base).items()
        if k in ("empty", "no finished jobs")  # the other cases run in-process above
    }
    cases["no arguments"] = ([], ["usage: python -m reglab.report SWEEP_DIR"])
    good = base / "good"
    sweep_of(good, [[f"regularizer.alpha={a}"] for a in ("0.001", "0.1")])
    cases["good"] = ([str(good)], [])
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_report, *args) for name, (args, _) in cases.items()}
        return {name: (f.result(), cases[name][1]) for name, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["empty", "no finished jobs", "no arguments"])
def test_cli_bad_input_is_one_line_without_traceback(cli_runs, case):
    proc, words = cli_runs[case]
    assert proc.returncode != 0
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


@pytest.mark.slow
def test_cli_writes_the_report_on_demand(cli_runs):
    proc, _ = cli_runs["good"]
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    md = Path(line.split()[1].rstrip(","))
    assert line == f"wrote {md}, {md.with_name('report.json')} and {md.with_name('report.png')}"
    assert len(table(md.read_text())) == 2
    png_size(md.with_name("report.png"))
    assert proc.stderr == ""


# -- real sweeps with the callback -----------------------------------------------------------------
SWEEP = (  # alpha is ignored under regularizer=none: 3 configurations, not 4
    "-m",
    "regularizer=none,l2",
    "regularizer.alpha=1e-4,1e-3",
    "seed=0,1",
    "debug=fast",
    "threads=1",
)
FAILING = ("-m", "regularizer.alpha=-1,1e-3", "seed=0,1", "debug=fast", "threads=1")


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    base = tmp_path_factory.mktemp("report_sweeps")
    args = {"ok": SWEEP, "failing": FAILING}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(run_cli, *a, f"hydra.sweep.dir={base / name}", CALLBACK)
            for name, a in args.items()
        }
        return {name: (f.result(), base / name) for name, f in futures.items()}


def jobs_by_config(sweep: Path) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(regularizer, alpha or "(ignored)") → seed → test/acc of its jobs, read straight from
    the job directories (an unregularized job's alpha changes nothing)."""
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for job in sweep.iterdir():
        if (job / "metrics.json").is_file():
            lines = yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
            overrides = dict(o.split("=", 1) for o in lines)
            reg = overrides["regularizer"]
            key = (reg, "(ignored)" if reg == "none" else overrides["regularizer.alpha"])
            acc = json.loads((job / "metrics.json").read_text())["test/acc"]
            out.setdefault(key, {}).setdefault(overrides["seed"], []).append(acc)
    return out


@pytest.mark.slow
def test_sweep_writes_the_report_at_its_end(sweeps):
    proc, sweep = sweeps["ok"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        proc.stdout.splitlines()[-1]
        == f"sweep report: {sweep / 'report.md'} (plot: {sweep / 'report.png'})"
    )
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stdout + proc.stderr
    md = (sweep / "report.md").read_text()
    assert "- **jobs:** 8: 8 finished, 0 failed (3 configurations;" in md
    rows = table(md)
    expected = jobs_by_config(sweep)
    names = [(unbold(r["regularizer"]), unbold(r["regularizer.alpha"])) for r in rows]
    assert names == [("none", "(ignored)"), ("l2", "0.0001"), ("l2", "0.001")]
    for row, name in zip(rows, names, strict=True):
        runs = [a for per_seed in expected[name].values() for a in per_seed]
        assert unbold(row["runs"]) == str(len(runs)) == ("4" if name[0] == "none" else "2")
        accs = [statistics.mean(per_seed) for per_seed in expected[name].values()]  # per seed
        mean, std = parse_mean_std(row[METRIC])
        assert mean == pytest.approx(statistics.mean(accs), abs=5e-5)
        assert std == pytest.approx(statistics.stdev(accs), abs=5e-5)
    width, height = png_size(sweep / "report.png")
    assert 700 <= width <= 1400 and 300 <= height <= 1200


@pytest.mark.slow
def test_sweep_compares_each_configuration_with_the_control(sweeps):
    """report.json's paired differences are scipy's, computed here from the jobs' files."""
    from scipy import stats

    _, sweep = sweeps["ok"]
    for job in sweep.iterdir():  # what the runs recorded: NoPenalty ignores alpha
        if (job / "run.json").is_file() and "regularizer=none" in (
            job / ".hydra/overrides.yaml"
        ).read_text():
            assert json.loads((job / "run.json").read_text())["ignored"] == ["regularizer.alpha"]
    doc = json.loads((sweep / "report.json").read_text())
    assert doc["control"] == {"regularizer": "none", "debug": "fast", "threads": "1"}
    expected = jobs_by_config(sweep)
    control = {s: statistics.mean(v) for s, v in expected["none", "(ignored)"].items()}
    for entry in doc["configurations"][1:]:
        per_seed = expected["l2", entry["overrides"]["regularizer.alpha"]]
        seeds = sorted(per_seed)
        x, c = [per_seed[s][0] for s in seeds], [control[s] for s in seeds]
        d = [a - b for a, b in zip(x, c, strict=True)]
        vs = entry["vs_control"]
        assert vs["n"] == 2 and vs["diff"] == pytest.approx(statistics.mean(d), abs=1e-12)
        if statistics.stdev(d) > 0:
            low, high = stats.t.interval(0.95, 1, loc=statistics.mean(d), scale=stats.sem(d))
            assert (vs["ci_low"], vs["ci_high"]) == pytest.approx((low, high), abs=1e-12)
            assert vs["p_value"] == pytest.approx(stats.ttest_rel(x, c).pvalue, abs=1e-12)
    assert doc["configurations"][0]["control"] and doc["configurations"][0]["vs_control"] is None


@pytest.mark.slow
def test_sweep_with_failed_jobs_still_writes_the_report(sweeps):
    """Hydra skips on_multirun_end when a job failed; the report comes at exit instead."""
    proc, sweep = sweeps["failing"]
    assert proc.returncode == 1
    assert f"sweep report: {sweep / 'report.md'}" in proc.stdout
    md = (sweep / "report.md").read_text()
    assert "- **jobs:** 4: 2 finished, 2 failed" in md
    failed = md[md.index("## Failed jobs (2)") :]
    error = "ConfigError: regularizer.alpha=-1 is not allowed"  # kept from Hydra's job returns
    assert failed.count(error) == 2
    assert "`regularizer.alpha=-1 seed=0 debug=fast threads=1`" in failed
