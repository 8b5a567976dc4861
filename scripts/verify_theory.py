"""Check chapter 7's closed forms against what reglab trains: `python scripts/verify_theory.py`.

Each check trains through reglab's own path (compose → build → Trainer.fit, reglab's
regularizers) on a quadratic problem, prints a table of measured against closed-form
values, and saves a figure to docs/figures/. Exits 1 if a check misses its tolerance
(the tolerances are those of `reglab.theory`, which tests/test_theory.py asserts too).
"""

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from reglab import theory

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
TAUS = (3, 30, 300)  # early-stopping times shown in the table and the figure
plt.rcParams.update({"font.size": 11, "axes.grid": True, "grid.alpha": 0.3})


# -- printing ------------------------------------------------------------------------------


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print `rows` under `header`, right-aligned; floats to 6 significant digits."""
    cells = [list(header)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    print(f"\n{title}")
    for line in [lines[0], "-" * len(lines[0]), *lines[1:]]:
        print("  " + line)


def _cell(value: object) -> str:
    return f"{value + 0.0:.6g}" if isinstance(value, float) else str(value)  # + 0.0: no "-0"


def verdict(name: str, value: float, tol: float) -> bool:
    ok = value <= tol
    print(f"  {name:<52} {value:9.2e}  (tolerance {tol:.0e})  {'ok' if ok else 'FAILED'}")
    return ok


def save(fig: plt.Figure, name: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    print(f"  figure: {out / name}")


# -- 1. L2 ---------------------------------------------------------------------------------


def report_l2(check: theory.L2Check, out: Path) -> bool:
    header = ["i", "λᵢ", "(Qᵀw*)ᵢ"]
    for alpha in check.alphas:
        header += [f"λ/(λ+{alpha:g})", "measured", "|Δ|"]
    rows = []
    for i, lam in enumerate(check.lam):
        row = [i, lam, check.projected_w_star[i]]
        for p, m in zip(check.predicted[:, i], check.measured[:, i], strict=True):
            row += [p, m, f"{abs(m - p):.1e}"]
        rows.append(row)
    table(
        "1. L2 (eq. 7.13): shrink factor per eigenvector of H = 2XᵀX/n, (Qᵀw̃)ᵢ/(Qᵀw*)ᵢ",
        header,
        rows,
    )
    ok = verdict("max |measured − λ/(λ+α)|", check.factor_error, theory.FACTOR_ATOL)
    ok &= verdict("max |w − w̃| / max |w̃|", check.weight_error, theory.WEIGHT_RTOL)
    ok &= verdict("max |∇J̃| at reglab's weights (converged)", check.gradient, theory.GRADIENT_ATOL)
    plot_l2(check, out)
    return ok


def plot_l2(check: theory.L2Check, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    grid = np.geomspace(check.lam.min() / 3, check.lam.max() * 3, 200)
    for alpha, measured, color in zip(check.alphas, check.measured, ("C0", "C1"), strict=True):
        ax.plot(grid, theory.l2_factor(grid, alpha), color=color, label=f"λ/(λ+α), α = {alpha:g}")
        ax.plot(
            check.lam, measured, "o", color=color, mfc="none", ms=9, label=f"reglab, α = {alpha:g}"
        )
        ax.axvline(alpha, color=color, ls=":", lw=1)
    ax.set(
        xscale="log",
        xlabel="eigenvalue λᵢ of H = 2XᵀX/n",
        ylabel="kept fraction (Qᵀw̃)ᵢ / (Qᵀw*)ᵢ",
        title="L2 rescales w* along H's eigenvectors (Goodfellow et al. eq. 7.13)",
        ylim=(0, 1.05),
    )
    ax.legend(loc="lower right")
    save(fig, "l2_shrinkage.png", out)


# -- 2. L1 ---------------------------------------------------------------------------------


def report_l1(check: theory.L1Check, out: Path) -> bool:
    rows = [
        [i, ws, check.alpha / h, p, m, f"{abs(m - p):.1e}", "0" if m == 0 else ""]
        for i, (ws, h, p, m) in enumerate(
            zip(check.w_star, check.h_diag, check.predicted, check.measured, strict=True)
        )
    ]
    header = ["i", "wᵢ*", "α/Hᵢᵢ", "eq. 7.23", "reglab wᵢ", "|Δ|", "zero"]
    table(
        f"2. L1 (eq. 7.23), whitened design (H = 2I), α = {check.alpha:g}, proximal SGD",
        header,
        rows,
    )
    print(f"  H off-diagonal: max |Hᵢⱼ| = {check.off_diagonal:.1e}")
    print(f"  zeros of reglab's w where eq. 7.23 has them, nowhere else: {check.same_zeros}")
    ok = verdict("max |w − eq. 7.23| / max |w*|", check.weight_error, theory.WEIGHT_RTOL)
    ok &= verdict(
        "L1 optimality violation at reglab's weights", check.violation, theory.GRADIENT_ATOL
    )
    plot_l1(check, out)
    return ok and check.same_zeros


def plot_l1(check: theory.L1Check, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    threshold = check.alpha / check.h_diag[0]
    grid = np.linspace(-1.15, 1.15, 400) * np.abs(check.w_star).max()
    ax.axvspan(-threshold, threshold, color="0.9", label=f"|wᵢ*| ≤ α/Hᵢᵢ = {threshold:g}: wᵢ = 0")
    ax.plot(grid, grid, color="0.6", ls="--", label="no penalty (w = w*)")
    ax.plot(
        grid,
        theory.l1_solution(grid, check.h_diag[0], check.alpha),
        label="sign(w*)·max(|w*| − α/Hᵢᵢ, 0)",
    )
    ax.plot(
        check.w_star, check.measured, "o", mfc="none", ms=9, color="C3", label="reglab, proximal L1"
    )
    ax.set(
        xlabel="unregularized weight wᵢ*",
        ylabel="L1-regularized weight wᵢ",
        title=f"L1, diagonal H: soft-threshold, α = {check.alpha:g} (Goodfellow et al. eq. 7.23)",
    )
    ax.legend(loc="upper left")
    save(fig, "l1_soft_threshold.png", out)


# -- 3. early stopping ---------------------------------------------------------------------


def limit_gap(x: np.ndarray) -> np.ndarray:
    """ES − L2 factor as ελ → 0 with λ/α = τελ = x fixed: (1 − e^{−x}) − x/(1 + x)."""
    return (1 - np.exp(-x)) - x / (1 + x)


def report_early_stopping(check: theory.EarlyStoppingCheck, out: Path) -> bool:
    eps = check.lr
    header = ["i", "λᵢ", "ελᵢ"]
    for tau in TAUS:
        header += [f"τ={tau}", f"L2 α={theory.equivalent_alpha(tau, eps):.3g}"]
    header.append("max |Δ 7.40|")
    rows = []
    for i, lam in enumerate(check.lam):
        row = [i, f"{lam:.4f}", f"{eps * lam:.4f}"]
        for tau in TAUS:
            t = check.at(tau)
            row += [f"{check.measured[t, i]:.5f}", f"{check.l2[t, i]:.5f}"]
        row.append(f"{np.abs(check.measured[:, i] - check.predicted[:, i]).max():.1e}")
        rows.append(row)
    table(
        "3. Early stopping (eq. 7.40) vs L2 with α = 1/(τε) (eq. 7.45). Columns τ: reglab's"
        f" (Qᵀw⁽τ⁾)ᵢ/(Qᵀw*)ᵢ\n   after τ full-batch steps of ε = {eps:g} from w = 0;"
        " max |Δ 7.40|: its largest distance to eq. 7.40 over τ = 1…300",
        header,
        rows,
    )
    ok = verdict(
        "max |Qᵀw⁽τ⁾ − eq. 7.40| / max |Qᵀw*|, τ = 1…300",
        check.trajectory_error,
        theory.WEIGHT_RTOL,
    )
    ok &= verdict("max |measured factor − eq. 7.40|", check.factor_error, theory.FACTOR_ATOL)
    report_equivalence(check)
    plot_early_stopping(check, out)
    return ok


def report_equivalence(check: theory.EarlyStoppingCheck) -> None:
    """Where early stopping's factors match L2's with α = 1/(τε), and where they do not."""
    eps = check.lr
    gap = check.predicted - check.l2
    for tau in (1, *TAUS):
        t = check.at(tau)
        i = int(np.abs(gap[t]).argmax())
        x = tau * eps * check.lam[i]
        print(f"  τ = {tau:3d}: max |ES − L2| = {abs(gap[t, i]):.3f} at λ/α = τελ = {x:.3g}")
    x = np.geomspace(1e-3, 1e4, 20_000)
    gaps = limit_gap(x)
    low, high = x[(gaps < 0.01) & (x < 1)].max(), x[(gaps < 0.01) & (x > 1)].min()
    print(f"  as ελ → 0 the gap is (1 − e^(−x)) − x/(1 + x), x = λ/α: at most {gaps.max():.3f}")
    peak = x[gaps.argmax()]
    print(f"  (at λ ≈ {peak:.2f}α), below 0.01 only for λ < {low:.2f}α or λ > {high:.0f}α;")
    print("  for ελ ≥ 1 a step overshoots: eq. 7.40 oscillates, and diverges past ελ = 2")


def plot_early_stopping(check: theory.EarlyStoppingCheck, out: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 9))
    plot_factors(check, top)
    plot_gaps(check, bottom)
    save(fig, "early_stopping_vs_l2.png", out)


def plot_factors(check: theory.EarlyStoppingCheck, ax: plt.Axes) -> None:
    """Per-direction factors as functions of λ: eq. 7.40 (solid), L2 at α = 1/(τε) (dashed)."""
    eps = check.lr
    grid = np.geomspace(check.lam.min() / 3, 1.9 / eps, 400)
    for tau, color in zip(TAUS, ("C0", "C1", "C2"), strict=True):
        alpha = theory.equivalent_alpha(tau, eps)
        ax.plot(
            grid,
            theory.early_stopping_factor(grid, eps, tau),
            color=color,
            label=f"1 − (1 − ελ)^τ, τ = {tau}",
        )
        ax.plot(
            grid,
            theory.l2_factor(grid, alpha),
            color=color,
            ls="--",
            label=f"λ/(λ + α), α = 1/(τε) = {alpha:.3g}",
        )
        ax.plot(check.lam, check.measured[check.at(tau)], "o", color=color, mfc="none", ms=8)
    ax.plot([], [], "o", color="0.3", mfc="none", label="reglab, w(τ) from w = 0")
    ax.axvline(1 / eps, color="0.5", ls=":", lw=1)
    ax.text(1 / eps, 0.03, " ελ = 1", color="0.4")
    ax.set(
        xscale="log",
        xlabel="eigenvalue λᵢ of H",
        ylabel="kept fraction of (Qᵀw*)ᵢ",
        title=f"Early stopping (eq. 7.40) vs L2 with α = 1/(τε) (eq. 7.45), ε = {eps:g}",
        ylim=(-0.05, 1.1),
    )
    ax.legend(fontsize=9, loc="upper left")


def plot_gaps(check: theory.EarlyStoppingCheck, ax: plt.Axes) -> None:
    """Early stopping's factor minus L2's, against λ/α = τελ, for a few ελ."""
    eps = check.lr
    xs = np.geomspace(1e-2, 1e3, 400)
    ax.plot(xs, limit_gap(xs), color="k", label="ελ → 0")
    for el, color in zip((0.1, 0.5, 1.0, 1.5), ("C4", "C5", "C6", "C7"), strict=True):
        tau = np.unique(np.geomspace(1, 1e3 / el, 200).astype(int))  # whole steps only
        x = tau * el
        gap = theory.early_stopping_factor(el, 1.0, tau) - theory.l2_factor(x, 1.0)
        ax.plot(x, gap, ".-", color=color, lw=1, ms=3, label=f"ελ = {el:g}")
    taus = np.array([check.at(t) for t in (1, 3, 10, 30, 100, 300)])
    x_measured = check.steps[taus, None] * eps * check.lam[None, :]
    ax.plot(
        x_measured.ravel(),
        (check.measured - check.l2)[taus].ravel(),
        "o",
        mfc="none",
        color="0.3",
        label="reglab",
    )
    ax.set(
        xscale="log",
        xlabel="λᵢ / α = τελᵢ",
        ylabel="early stopping − L2 factor",
        title="Where α ≈ 1/(τε) holds: λ ≪ α or λ ≫ α, with ελ small",
        ylim=(-0.1, 0.6),
    )
    ax.legend(fontsize=9, ncol=2, loc="upper right")


# -- 4. ensembles --------------------------------------------------------------------------


def report_ensemble(check: theory.EnsembleCheck, out: Path) -> bool:
    header = ["k"] + [f"c = {c / check.v:g}v" for c in check.cs]
    sim, formula = check.measured, check.predicted  # c × k

    def cell(j: int, k: int) -> str:
        return f"{sim[j, k - 1]:.4f}/{formula[j, k - 1]:.4f}"

    rows = [[k, *(cell(j, k) for j in range(len(check.cs)))] for k in (1, 2, 5, 10, 20)]
    table(
        f"4a. Ensemble squared error, simulated/eq. 7.50, {check.draws:,} draws, v = {check.v:g}",
        header,
        rows,
    )
    ok = verdict(
        "max |simulated / eq. 7.50 − 1|, k = 1…20", check.relative_error, theory.ENSEMBLE_RTOL
    )
    plot_ensemble(check, out)
    return ok


def plot_ensemble(check: theory.EnsembleCheck, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for j, c in enumerate(check.cs):
        color = f"C{j}"
        ax.plot(
            check.ks, check.predicted[j], color=color, label=f"v/k + (k−1)c/k, c = {c / check.v:g}v"
        )
        ax.plot(check.ks, check.measured[j], "o", color=color, mfc="none", ms=6)
    ax.plot([], [], "o", color="0.3", mfc="none", label=f"simulated ({check.draws:,} draws)")
    ax.set(
        xlabel="ensemble size k",
        ylabel="E[(Σᵢ εᵢ / k)²]",
        title="Ensemble error for members' error variance v, covariance c (eq. 7.50)",
        xticks=[1, 5, 10, 15, 20],
        ylim=(0, 1.32),
    )
    ax.legend(fontsize=9, ncol=2, loc="upper right")
    save(fig, "ensemble_error.png", out)


def report_bagging(check: theory.BaggingCheck, out: Path) -> bool:
    v, c = check.moments()
    k = check.k
    rows = [[f"member {i}", f"{m:.1f}"] for i, m in enumerate(check.member_mse)]
    rows += [
        ["v = mean εᵢ²", f"{v:.1f}"],
        ["c = mean εᵢεⱼ, i ≠ j", f"{c:.1f}"],
        ["c / v", f"{c / v:.3f}"],
        ["member MSE, mean (= v)", f"{check.member_mse.mean():.1f}"],
        [f"ensemble MSE, k = {k}", f"{check.ensemble_mse():.1f}"],
        ["v/k + (k−1)c/k", f"{theory.ensemble_error(v, c, k):.1f}"],
    ]
    title = f"4b. Bagging on diabetes: {k} reglab MLPs, data.bootstrap=0…{k - 1}, test-set errors"
    table(title, ["", "test MSE"], rows)
    print("  (eq. 7.50 holds exactly for the empirical v and c: an identity of moments;")
    print("   c contains the noise in y that every member's error shares, the floor as k → ∞)")
    ok = verdict(
        "max |ensemble MSE − (v/k + (k−1)c/k)| / MSE, k = 1…K",
        check.identity_error,
        theory.IDENTITY_RTOL,
    )
    plot_bagging(check, out)
    return ok


def plot_bagging(check: theory.BaggingCheck, out: Path) -> None:
    v, c = check.moments()
    k = check.k
    fig, ax = plt.subplots(figsize=(8, 5))
    ks = np.arange(1, k + 1)
    ax.plot(np.ones(k), check.member_mse, "_", color="0.5", ms=14, label="single members")
    ax.plot(
        ks,
        [check.ensemble_mse(j) for j in ks],
        "o",
        ms=8,
        mfc="none",
        label="ensemble of members 0…k−1",
    )
    ax.plot(
        ks,
        [theory.ensemble_error(*check.moments(j), j) for j in ks],
        "x",
        label="v/k + (k−1)c/k, moments of those k",
    )
    ax.plot(
        ks,
        theory.ensemble_error(v, c, ks),
        color="C2",
        label=f"v/k + (k−1)c/k, all {k}: v = {v:.0f}, c = {c:.0f}",
    )
    ax.axhline(c, color="C2", ls=":", label="c: the limit k → ∞")
    ax.set(
        xlabel="ensemble size k",
        ylabel="test MSE",
        title=f"Bagging {k} MLPs on diabetes (eq. 7.50 with measured v, c)",
        xticks=ks,
    )
    ax.legend(fontsize=9, loc="upper right")
    save(fig, "bagging_diabetes.png", out)


# -- 6. norm constraints ------------------------------------------------------------------

CONSTRAINT_ALPHAS = {"l2_ball": (0.1, 1.0, 10.0), "l1_ball": (1.0, 4.0, 20.0)}
PLANE = [
    *theory.source("correlated_design"),
    "+data.source.n_features=2",
    "+data.source.condition=10",
]


def report_constraints(tmp: str, out: Path) -> bool:
    """Constraint ≡ penalty on diabetes (eq. 7.25–7.27): w, zeros and the multiplier."""
    rows, ok = [], True
    for kind, alphas in CONSTRAINT_ALPHAS.items():
        for alpha in alphas:
            c = theory.check_constraint(f"{tmp}/{kind}-{alpha}", kind, alpha)
            zeros = f"{(c.measured == 0).sum()}/{(c.penalized == 0).sum()}"
            rows.append(
                [
                    kind,
                    alpha,
                    f"{c.radius:.4g}",
                    f"{c.weight_error:.1e}",
                    f"{c.multiplier:.6g}",
                    zeros,
                ]
            )
            ok &= c.weight_error < theory.WEIGHT_RTOL and c.same_zeros
            ok &= c.multiplier_error < theory.MULTIPLIER_RTOL and c.active_fraction == 1.0
    header = [
        "constraint",
        "α",
        "k = Ω(w̃(α))",
        "‖w − w̃‖/‖w̃‖",
        "multiplier",
        "zeros (reglab/penalized)",
    ]
    table("6. norm constraint ≡ penalty, diabetes, SGD with momentum 0.9", header, rows)
    print(
        f"  every row within {theory.WEIGHT_RTOL:.0e} of w̃(α),"
        f" multiplier within {theory.MULTIPLIER_RTOL:.0e} of α: {ok}"
    )
    plot_constraints(tmp, out)
    return ok


def plot_constraints(tmp: str, out: Path) -> None:
    """The constraint region, the path of w, the penalized solution, on a 2-feature design."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (kind, alpha) in zip(axes, [("l2_ball", 0.5), ("l1_ball", 0.3)], strict=True):
        c = theory.check_constraint(f"{tmp}/plane-{kind}", kind, alpha, data=PLANE)
        x, y = theory.training_data(
            theory.fit([*PLANE, *theory.gradient_descent(0.1, 1)], f"{tmp}/p")
        )
        w_star = theory.least_squares(x, y)
        span = 1.3 * np.abs(np.vstack([c.path, w_star])).max()
        g = np.linspace(-span, span, 200)
        a, b = np.meshgrid(g, g)
        w = np.stack([a.ravel(), b.ravel()], 1)
        loss = (((x - x.mean(0)) @ w.T - (y - y.mean())[:, None]) ** 2).mean(0).reshape(a.shape)
        levels = loss.min() + np.geomspace(1e-3, 1, 10) * (loss.max() - loss.min())
        ax.contour(a, b, loss, levels=levels, colors="0.75", linewidths=0.8)  # J's level sets
        t = np.linspace(0, 2 * np.pi, 400)
        ring = (
            [np.cos(t), np.sin(t)]
            if kind == "l2_ball"
            else [np.sign(np.cos(t)) * np.cos(t) ** 2, np.sign(np.sin(t)) * np.sin(t) ** 2]
        )
        ax.fill(
            c.radius * ring[0],
            c.radius * ring[1],
            color="C0",
            alpha=0.15,
            label=f"Ω(w) ≤ k = {c.radius:.3g}",
        )
        ax.plot(
            c.path[:, 0],
            c.path[:, 1],
            ".-",
            color="C1",
            ms=2,
            lw=0.8,
            label="reglab's w during training",
        )
        ax.plot(*w_star, "k+", ms=12, label="w* (no penalty)")
        ax.plot(
            *c.penalized, "o", mfc="none", ms=12, color="C3", label=f"penalized w̃(α = {alpha:g})"
        )
        ax.set(
            aspect="equal",
            xlabel="w₁",
            ylabel="w₂",
            title=f"constraint={kind}: λ = {c.multiplier:.4g}",
        )
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(
        "Regularization as constraint (eq. 7.25–7.27): the constrained optimum is the penalized one"
    )
    save(fig, "norm_constraints.png", out)


# -- 7. input noise ------------------------------------------------------------------------


def report_input_noise(check: theory.InputNoiseCheck) -> bool:
    columns = (check.w_star, check.closed_form, check.wrong, check.noisy, check.penalized)
    rows = [[i, *values] for i, values in enumerate(zip(*columns, strict=True))]
    sigma = check.sigma
    table(
        f"7. Input noise σ = {sigma:g} ≡ L2 with α = 2σ² = {2 * sigma**2:g} (Bishop 1995)",
        ["i", "w*", "w̃(2σ²)", "w̃(σ²)", "input noise", "l2 α=2σ²"],
        rows,
    )
    ok = verdict("max |w(noise) − w̃(2σ²)| / max |w̃|", check.error(check.noisy), theory.NOISE_RTOL)
    ok &= verdict(
        "max |w(l2) − w̃(2σ²)| / max |w̃|", check.error(check.penalized), theory.WEIGHT_RTOL
    )
    print(f"  (against α = σ², the factor 2 forgotten: {check.error(check.wrong):.2e} apart)")
    return ok


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=FIGURES, help="where to save the PNGs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ok &= report_l2(theory.check_l2(f"{tmp}/l2"), args.figures)
        ok &= report_l1(theory.check_l1(f"{tmp}/l1"), args.figures)
        ok &= report_early_stopping(theory.check_early_stopping(f"{tmp}/es"), args.figures)
        ok &= report_ensemble(theory.check_ensemble(), args.figures)
        ok &= report_bagging(theory.check_bagging(f"{tmp}/bagging"), args.figures)
        ok &= report_constraints(f"{tmp}/constraints", args.figures)
        ok &= report_input_noise(theory.check_input_noise(f"{tmp}/input_noise"))
    seconds = time.perf_counter() - start
    print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'} in {seconds:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
