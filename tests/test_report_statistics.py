"""The report's statistics against independent truth: Holm's correction worked by hand,
paired differences, their CIs and p-values from scipy computed here, and which jobs are
one configuration (decided from their composed configs and the keys their options ignore).

Sweeps are built by hand (tests/sweep_dirs.py), so every number is known here.
"""

import json
import statistics

import numpy as np
import pytest
from scipy import stats
from sweep_dirs import composed, table, unbold, write_job

from reglab import report

NONE = {"_target_": "reglab.regularization.NoPenalty"}


def write_sweep(tmp_path, accs: dict[tuple[str, ...], list[float]], ignored=True):
    """One job per configuration (its overrides) and seed, with the given test accuracies;
    regularizer=none jobs record that they ignore regularizer.alpha, as real runs do."""
    num = 0
    for overrides, values in accs.items():
        for seed, acc in enumerate(values):
            typed = [*overrides, f"seed={seed}"]
            config = composed(typed)
            none = "regularizer=none" in overrides
            run = {"seconds": 1.0, "ignored": ["regularizer.alpha"] if none and ignored else []}
            write_job(tmp_path, num, typed, {"test/acc": acc}, run, config=config)
            num += 1
    return tmp_path


def document(sweep, control=None) -> dict:
    report.write_report(sweep, control=control)
    return json.loads((sweep / "report.json").read_text())


# -- Holm ------------------------------------------------------------------------------------------
def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max(0.06, 0.04)
    assert report.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert report.holm([0.5, 0.6]) == [1.0, 1.0]  # 0.5·2 caps at 1, and the next keeps it
    assert report.holm([0.2]) == [0.2] and report.holm([]) == []


def test_holm_is_monotone_and_never_below_the_raw_p():
    rng = np.random.default_rng(0)
    for m in (2, 3, 7, 20):
        for _ in range(50):
            p = list(rng.uniform(0, 0.2, m) ** 2)
            adjusted = report.holm(p)
            assert all(raw <= a <= 1 for raw, a in zip(p, adjusted, strict=True))
            for i in range(m):
                for j in range(m):
                    if p[i] <= p[j]:
                        assert adjusted[i] <= adjusted[j]
            assert min(adjusted) == pytest.approx(min(1.0, m * min(p)))  # Bonferroni's first


# -- paired comparisons ----------------------------------------------------------------------------
def test_paired_difference_ci_and_p_are_scipys(tmp_path):
    rng = np.random.default_rng(1)
    control = list(0.90 + rng.normal(0, 0.01, 5))
    accs = {
        ("regularizer=none",): control,
        ("regularizer=l2",): [c + 0.004 + rng.normal(0, 0.006) for c in control],
        ("regularizer=l1",): [c - 0.02 + rng.normal(0, 0.003) for c in control],
    }
    doc = document(write_sweep(tmp_path, accs))
    p = {}
    for entry in doc["configurations"][1:]:
        x = accs[(f"regularizer={entry['overrides']['regularizer']}",)]
        d = np.subtract(x, control)
        t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))  # by hand, not ttest_rel
        vs = entry["vs_control"]
        assert vs["n"] == 5 and vs["diff"] == pytest.approx(d.mean(), abs=1e-12)
        low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert (vs["ci_low"], vs["ci_high"]) == pytest.approx((low, high), abs=1e-12)
        assert vs["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1), rel=1e-9)
        p[entry["overrides"]["regularizer"]] = vs["p_value"]
    holm = {k: e["vs_control"]["p_holm"] for k, e in zip(p, doc["configurations"][1:], strict=True)}
    low, high = sorted(p, key=p.get)
    assert holm[low] == pytest.approx(min(1, 2 * p[low]))  # m = 2 comparisons
    assert holm[high] == pytest.approx(max(holm[low], p[high]))


def test_better_and_worse_only_where_holm_p_is_below_5_percent(tmp_path):
    control = [0.90, 0.91, 0.89, 0.92, 0.90]
    accs = {
        ("regularizer=none",): control,
        ("regularizer=l1",): [
            c + d for c, d in zip(control, [0.03, 0.025, 0.035, 0.03, 0.028], strict=True)
        ],
        ("regularizer=l2",): [
            c + d for c, d in zip(control, [0.02, -0.03, 0.01, -0.01, 0.012], strict=True)
        ],
        ("regularizer=elastic_net",): [
            c - d for c, d in zip(control, [0.02, 0.03, 0.025, 0.02, 0.03], strict=True)
        ],
    }
    doc = document(write_sweep(tmp_path, accs))
    verdicts = {e["overrides"].get("regularizer"): e["vs_control"] for e in doc["configurations"]}
    assert verdicts["l1"]["verdict"] == "better" and verdicts["l1"]["p_holm"] < 0.05
    assert verdicts["elastic_net"]["verdict"] == "worse"
    assert verdicts["l2"]["verdict"] == "no difference" and verdicts["l2"]["p_holm"] >= 0.05
    assert doc["best"] == {"regularizer": "l1"}
    md = (tmp_path / "report.md").read_text()
    rows = table(md, "## Against the control")
    assert [r[""] for r in rows] == [
        "",
        "**better than the control**",
        "no difference at 5 %",
        "**worse than the control**",
    ]
    assert "- **best:** **regularizer=l1**" in md and "better than the control by +0.02" in md


def test_noise_is_never_called_best(tmp_path):
    """A higher mean over 3 seeds whose differences straddle 0 is no winner."""
    accs = {("regularizer=none",): [0.90, 0.95, 0.92], ("regularizer=l2",): [0.93, 0.94, 0.95]}
    doc = document(write_sweep(tmp_path, accs))
    assert statistics.mean(accs["regularizer=l2",]) > statistics.mean(accs["regularizer=none",])
    assert doc["best"] is None and doc["configurations"][1]["vs_control"]["p_holm"] > 0.05
    md = (tmp_path / "report.md").read_text()
    assert "- **best:** none: no configuration differs from the control at 5 %" in md
    assert not [r for r in table(md) if r["regularizer"].startswith("**")]


def test_only_shared_seeds_are_paired_and_fewer_than_two_give_no_test(tmp_path):
    accs = {
        ("regularizer=none",): [0.90, 0.91, 0.92],
        ("regularizer=l2",): [0.93, 0.95, 0.94, 0.99],  # seed 3 has no control to pair with
        ("regularizer=l1",): [0.97],
    }
    doc = document(write_sweep(tmp_path, accs))
    l2, l1 = (e["vs_control"] for e in doc["configurations"][1:])
    d = np.subtract([0.93, 0.95, 0.94], [0.90, 0.91, 0.92])
    assert l2["n"] == 3 and l2["diff"] == pytest.approx(d.mean())
    assert l2["p_value"] == pytest.approx(
        stats.ttest_rel([0.93, 0.95, 0.94], [0.90, 0.91, 0.92]).pvalue
    )
    assert l1 == {**l1, "n": 1, "ci_low": None, "p_value": None, "p_holm": None}
    assert l1["diff"] == pytest.approx(0.07)
    md = (tmp_path / "report.md").read_text()
    assert "fewer than 2 shared seeds: no test" in md
    assert l2["p_holm"] == pytest.approx(l2["p_value"])  # one test: nothing to correct


# -- configurations and the control ----------------------------------------------------------------
def test_keys_the_options_ignore_do_not_make_configurations(tmp_path):
    """regularizer=none,l2 × regularizer.alpha=1e-4,1e-3: three configurations; a none job
    that failed before writing run.json joins its configuration through its config."""
    accs = {
        (f"regularizer={r}", f"regularizer.alpha={a}"): [0.9 + 0.01 * i, 0.91 + 0.02 * i]
        for i, (r, a) in enumerate([(r, a) for r in ("none", "l2") for a in ("1e-4", "1e-3")])
    }
    sweep = write_sweep(tmp_path, accs)
    typed = ["regularizer=none", "regularizer.alpha=1e-2", "seed=2"]
    write_job(sweep, 99, typed, config=composed(typed))  # failed: no metrics, no run.json
    doc = document(sweep)
    overrides = [e["overrides"] for e in doc["configurations"]]
    assert overrides == [
        {"regularizer": "none"},
        {"regularizer": "l2", "regularizer.alpha": "1e-4"},
        {"regularizer": "l2", "regularizer.alpha": "1e-3"},
    ]
    none = doc["configurations"][0]
    assert none["runs"] == 4 and none["n"] == 2  # the failed job is listed, not averaged
    assert none["mean"] == pytest.approx(statistics.mean([0.905, 0.92]))  # seed 0: 0.9, 0.91
    rows = table((sweep / "report.md").read_text())
    assert [unbold(r["regularizer.alpha"]) for r in rows] == ["(ignored)", "1e-4", "1e-3"]
    assert unbold(rows[0]["runs"]) == "4 of 5"


def test_configurations_are_the_composed_configs_not_the_spelling(tmp_path):
    accs = {("regularizer=l2", "regularizer.alpha=1e-3"): [0.9, 0.92]}
    sweep = write_sweep(tmp_path, accs)
    for seed in (2, 3):  # typed differently, composed alike
        typed = ["regularizer=l2", "regularizer.alpha=0.001", f"seed={seed}"]
        write_job(sweep, 10 + seed, typed, {"test/acc": 0.91}, config=composed(typed))
    assert [e["runs"] for e in document(sweep)["configurations"]] == [4]


def test_the_control_defaults_to_regularizer_none_and_can_be_chosen(tmp_path, capsys):
    accs = {
        ("regularizer=l2",): [0.95, 0.96, 0.97],
        ("regularizer=none",): [0.90, 0.92, 0.91],
    }
    sweep = write_sweep(tmp_path, accs)
    assert document(sweep)["control"] == {"regularizer": "none"}
    assert report.main([str(sweep), "--control", "regularizer=l2"]) == 0
    doc = json.loads((sweep / "report.json").read_text())
    assert doc["control"] == {"regularizer": "l2"}
    none = next(e for e in doc["configurations"] if e["overrides"] == {"regularizer": "none"})
    assert none["vs_control"]["diff"] == pytest.approx(-0.05)
    capsys.readouterr()
    assert report.main([str(sweep), "--control", "regularizer=l1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--control 'regularizer=l1' matches no configuration" in err
    assert "regularizer=l2; regularizer=none" in err


def test_report_json_holds_the_table(tmp_path):
    accs = {("regularizer=none",): [0.90, 0.92], ("regularizer=l2",): [0.93, 0.96]}
    doc = document(write_sweep(tmp_path, accs))
    assert set(doc) >= {"configurations", "control", "best"}
    for entry, values in zip(doc["configurations"], accs.values(), strict=True):
        assert entry["n"] == 2 and entry["mean"] == pytest.approx(statistics.mean(values))
        assert entry["std"] == pytest.approx(statistics.stdev(values))
    vs = doc["configurations"][1]["vs_control"]
    assert set(vs) >= {"diff", "ci_low", "ci_high", "p_value", "p_holm"}


def test_multitask_sweeps_compare_each_task_not_the_summed_loss(tmp_path):
    """All tasks on one trunk vs each task alone: the summed test/loss of one task is
    smaller than that of two, so comparing it called every single-task run "better". Each
    task's metric is compared instead, paired over seeds, Holm over all the tests."""
    t0_all, t0_alone = [0.60, 0.62, 0.58, 0.61], [0.70, 0.71, 0.69, 0.72]  # mse: lower wins
    t1_all, t1_alone = [0.80, 0.70, 0.85, 0.75], [0.78, 0.74, 0.80, 0.79]  # accuracy: noise
    jobs = {
        "data.use_tasks=null": lambda s: {"test/t0/mse": t0_all[s], "test/t1/acc": t1_all[s]},
        "data.use_tasks=[t0]": lambda s: {"test/t0/mse": t0_alone[s]},
        "data.use_tasks=[t1]": lambda s: {"test/t1/acc": t1_alone[s]},
    }
    for num, (override, metrics) in enumerate(jobs.items()):
        for seed in range(4):
            values = {**metrics(seed), "test/loss": sum(metrics(seed).values())}
            typed = [override, f"seed={seed}"]
            config = composed(typed, {"seed": 0, "data": {"use_tasks": None}})
            write_job(tmp_path, 4 * num + seed, typed, values, {"seconds": 1.0}, config=config)
    doc = document(tmp_path, control="data.use_tasks=null")
    by = {json.dumps(e["overrides"]): e for e in doc["configurations"]}
    t0 = by['{"data.use_tasks": "[t0]"}']
    t1 = by['{"data.use_tasks": "[t1]"}']
    assert t0["vs_control"] is None and t1["vs_control"] is None  # not on the summed loss
    raw = {
        "t0": stats.ttest_rel(t0_alone, t0_all).pvalue,
        "t1": stats.ttest_rel(t1_alone, t1_all).pvalue,
    }
    vs0, vs1 = t0["vs_control_tasks"]["test/t0/mse"], t1["vs_control_tasks"]["test/t1/acc"]
    assert set(t0["vs_control_tasks"]) == {"test/t0/mse"}  # only the task it trained
    assert vs0["diff"] == pytest.approx(np.mean(np.subtract(t0_alone, t0_all)))
    assert vs0["p_value"] == pytest.approx(raw["t0"]) and vs1["p_value"] == pytest.approx(raw["t1"])
    assert vs0["p_holm"] == pytest.approx(min(1, 2 * min(raw.values())))  # m = 2 tests
    assert vs0["verdict"] == "worse" and vs1["verdict"] == "no difference"
    assert doc["best"] is None
    rows = table((tmp_path / "report.md").read_text(), "## Per task, against the control")
    assert [(r["task"], unbold(r[""])) for r in rows] == [
        ("`test/t0/mse`", "worse than the control"),
        ("`test/t1/acc`", "no difference at 5 %"),
    ]
