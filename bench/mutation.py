"""Mutation testing of the statistics: would the tests notice a realistic one-line mistake?

Each mutant replaces one line fragment of core/metrics (paired, decisions, bootstrap, classification,
thresholds, reliability) with a plausible slip: a wrong interval level, a one-sided p, a median where
the mean belongs, resamples that lose a class averaged over fewer classes instead of skipped, a
wrong count, an off-by-one. It is applied to a copy of core/ and tests/ in the scratch folder (the
repository is never edited), the test files of that module run with -x, and the mutant is *killed*
when they fail (or time out). The figure is the share killed; the note lists survivors, each of
which is either a missing test or an equivalent mutant to explain in docs/metrics.md.

`python -m bench --only mutation` runs every mutant (minutes: each runs its module's test files);
--quick runs a third of them and --tiny two, which shows it works but says little.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Context, Row

ROOT = Path(__file__).resolve().parents[1]
TESTS = {
    "paired": ("tests/test_paired.py", "tests/test_comparisons.py"),
    "decisions": ("tests/test_decisions.py", "tests/test_comparisons.py"),
    "bootstrap": ("tests/test_metrics.py", "tests/test_paired.py"),
    "classification": ("tests/test_metrics.py",),
    "thresholds": ("tests/test_thresholds.py",),
    "reliability": ("tests/test_calibration.py",),
}
TIMEOUT_S = 300


@dataclass(frozen=True)
class Mutant:
    module: str  # core/metrics/<module>.py
    old: str  # a fragment found exactly once in the module
    new: str
    why: str  # the slip it stands for


MUTANTS = (
    Mutant("paired", "q = float(stats.t.ppf(1 - alpha / 2, df))", "q = float(stats.t.ppf(1 - alpha / 4, df))",
           "intervals at 97.5% instead of 95%"),
    Mutant("paired", '"p_value": float(2 * stats.t.sf(abs(delta) / se, df))',
           '"p_value": float(stats.t.sf(abs(delta) / se, df))', "one-sided p"),
    Mutant("paired", "boot_delta = boots[:k_a].mean(axis=0) - boots[k_a:].mean(axis=0)",
           "boot_delta = np.median(boots[:k_a], axis=0) - np.median(boots[k_a:], axis=0)",
           "median over seeds on the resamples"),
    Mutant("paired", "class_delta = full[:k_a].mean(axis=0) - full[k_a:].mean(axis=0)",
           "class_delta = np.median(full[:k_a], axis=0) - np.median(full[k_a:], axis=0)", "median over seeds"),
    Mutant("paired", "mean_boot = boot_delta[:, used].mean(axis=1) if used.any()",
           "mean_boot = np.nanmean(boot_delta[:, used], axis=1) if used.any()",
           "resamples losing a class averaged over fewer classes instead of skipped"),
    Mutant("paired", '"n_boot_used": int(finite.size)', '"n_boot_used": int(n_boot)', "wrong n_boot_used"),
    Mutant("paired", "return (n_pos >= min_positives) & (len(labels) - n_pos >= min_positives)",
           "return (n_pos > min_positives) & (len(labels) - n_pos > min_positives)", "off-by-one class threshold"),
    Mutant("paired", "return (n_pos >= min_positives) & (len(labels) - n_pos >= min_positives)",
           "return (n_pos >= 1) & (len(labels) - n_pos >= 1)", "rare classes admitted (the old rule)"),
    Mutant("paired", "parts = [(v / k, k - 1) for v, k in known]", "parts = [(v / k, k) for v, k in known]",
           "seed degrees of freedom k instead of k - 1"),
    Mutant("paired", "var = image_var + seed_term", "var = image_var", "seeds treated as fixed (the old bug)"),
    Mutant("paired", "var = image_var + seed_term", "var = max(image_var, seed_term)", "variance parts not summed"),
    Mutant("paired", 'return float(np.var(values, ddof=1)) if len(values) > 1', 'return float(np.var(values)) if '
           'len(values) > 1', "seed variance with ddof 0"),
    Mutant("paired", "float(np.var(d, ddof=1)) if d.size > 1", "float(np.var(d)) if d.size > 1",
           "per-class image variance with ddof 0"),
    Mutant("paired", 'p = result.get("p_value") if p_adjusted is None else p_adjusted', 'p = result.get("p_value")',
           "verdict ignores the adjusted p"),
    Mutant("paired", '"auc_a": float(run_means[:k_a].mean())', '"auc_a": float(np.median(run_means[:k_a]))',
           "group AUC the median seed"),
    Mutant("paired", "row |= {\"ci_low\": ti[\"ci_low\"], \"ci_high\": ti[\"ci_high\"]",
           "row |= {\"ci_low\": ti[\"ci_low\"], \"ci_high\": ti[\"ci_low\"]", "per-class upper bound copied"),
    Mutant("decisions", "stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))",
           "stepped = p[order] * (m - np.arange(m))", "Holm without the monotone step"),
    Mutant("decisions", "stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))",
           "stepped = np.maximum.accumulate(p[order] * m)", "Bonferroni instead of Holm"),
    Mutant("decisions", 'stats.false_discovery_control(raw[ok], method="bh")',
           'stats.false_discovery_control(raw[ok], method="by")', "Benjamini-Yekutieli instead of BH"),
    Mutant("decisions", "q = float(stats.t.ppf(1 - alpha, math.inf if df is None else df))",
           "q = float(stats.t.ppf(1 - alpha / 2, math.inf if df is None else df))",
           "non-inferiority bound two-sided"),
    Mutant("decisions", 'out["noninferior"] = bool(lower > -margin)', 'out["noninferior"] = bool(result["delta"] > '
           '-margin)', "non-inferiority from the point estimate"),
    Mutant("decisions", 'out["p_equivalence"] = max(out["p_noninferior"]', 'out["p_equivalence"] = min(out["p_noninferior"]',
           "TOST p the smaller one-sided p"),
    Mutant("decisions", "if _power(math.sqrt(image_var + seed_var / k) or 1e-12, 2 * k - 2, effect, alpha) >= power",
           "if _power(math.sqrt(image_var + seed_var / k) or 1e-12, 2 * k - 2, effect, alpha / 2) >= power",
           "power at the wrong level"),
    Mutant("bootstrap", "return np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])",
           "return np.percentile(finite, [100 * alpha / 4, 100 * (1 - alpha / 4)])", "percentile interval at 97.5%"),
    Mutant("bootstrap", "return percentile_ci(boot[:, defined].mean(axis=1), alpha)",
           "return percentile_ci(np.nanmean(boot[:, defined], axis=1), alpha)",
           "single-run mean over fewer classes instead of skipped"),
    Mutant("bootstrap", "neg_cum[:, below] + neg_cum[:, upto]", "2 * neg_cum[:, below]", "ties not counted half"),
    Mutant("bootstrap", "yield rng.integers(0, n, size=", "yield rng.integers(0, n - 1, size=",
           "the last image never drawn"),
    Mutant("classification", "    alpha = 0.05\n", "    alpha = 0.025\n", "summarize's intervals at 97.5%"),
    Mutant("bootstrap", "correct = ((scores > 0.5) == labels)", "correct = ((scores >= 0.5) == labels)",
           "ACC interval with >= where medmnist has >"),
    Mutant("thresholds", "fp = ends + 1 - tp", "fp = ends - tp", "false positives off by one"),
    Mutant("thresholds", "int(np.argmax(tp / p - fp / n))", "int(np.argmax(tp / p - fp / p))",
           "Youden's J with the wrong denominator"),
    Mutant("thresholds", "int(np.argmax(2 * tp / (tp + fp + p)))", "int(np.argmax(2 * tp / (tp + fp + n)))",
           "F1 with negatives for positives"),
    Mutant("reliability", 'gap = np.where(bins["count"] > 0, np.abs(bins["mean_score"] - bins["frac_pos"]), 0.0)',
           'gap = np.where(bins["count"] > 0, bins["mean_score"] - bins["frac_pos"], 0.0)', "signed ECE gap"),
    Mutant("reliability", "which = np.minimum((scores * n_bins).astype(np.int64), n_bins - 1)",
           "which = np.minimum((scores * n_bins).astype(np.int64), n_bins)", "a score of 1 in a bin of its own"),
    Mutant("reliability", "brier = np.where(defined, ((scores - labels) ** 2).mean(axis=0), np.nan)",
           "brier = np.where(defined, np.abs(scores - labels).mean(axis=0), np.nan)", "absolute error for Brier"),
)


def _copy(work: Path) -> Path:
    """A copy of what the statistics tests import: core/, tests/ and pytest.ini."""
    dest = work / "mutation-tree"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("core", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pytest.ini", dest / "pytest.ini")
    return dest


def run_mutant(tree: Path, mutant: Mutant, timeout_s: float = TIMEOUT_S) -> dict:
    """Apply `mutant` in `tree`, run its module's tests, restore the file; ``{"status", "seconds"}``.

    status: "killed" (tests failed or timed out), "survived" (tests passed) or "stale" (the fragment is
    not found exactly once: the mutant no longer matches the code).
    """
    path = tree / "core" / "metrics" / f"{mutant.module}.py"
    source = path.read_text()
    if source.count(mutant.old) != 1:
        return {"status": "stale", "seconds": 0.0}
    path.write_text(source.replace(mutant.old, mutant.new))
    t = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:xdist", *TESTS[mutant.module]],
                              cwd=tree, capture_output=True, text=True, timeout=timeout_s)
        status = "survived" if done.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        status = "killed"
    finally:
        path.write_text(source)
    return {"status": status, "seconds": time.perf_counter() - t}


def run(ctx: Context) -> list[Row]:
    chosen = {"tiny": MUTANTS[:2], "quick": MUTANTS[::3]}.get(ctx.mode.name, MUTANTS)
    tree = _copy(ctx.workdir)
    results = []
    for i, mutant in enumerate(chosen, 1):
        r = run_mutant(tree, mutant)
        ctx.log(f"mutation {i}/{len(chosen)}: {mutant.module}: {mutant.why}: {r['status']} ({r['seconds']:.0f} s)")
        results.append((mutant, r))
    live = [(m, r) for m, r in results if r["status"] != "stale"]
    killed = sum(r["status"] == "killed" for _, r in live)
    survivors = "; ".join(f"{m.module}: {m.why}" for m, r in live if r["status"] == "survived") or "none"
    stale = [m.why for m, r in results if r["status"] == "stale"]
    rate = killed / len(live) if live else None
    return [Row("mutation.kill_rate", rate, "share", None, None, ">= 0.9", None if rate is None else rate >= 0.9,
                f"{killed} of {len(live)} one-line mutants of core/metrics killed by their tests; survivors: "
                f"{survivors}" + (f"; stale (fragment not found): {', '.join(stale)}" if stale else ""))]
