"""core.metrics.decisions: adjusted p within a family, non-inferiority / equivalence, seeds needed, each
against a reference written from its definition here."""
import math

import numpy as np
import pytest
from scipy import stats

from core import metrics


def holm_by_definition(p):
    """Holm's adjusted p: for the i-th smallest, the largest (m - j + 1) p_(j) over j <= i, capped at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m, out, running = len(p), [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def bh_by_definition(p):
    """Benjamini-Hochberg: for the i-th smallest, the smallest m p_(j) / j over j >= i, capped at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m, out = len(p), [0.0] * len(p)
    for rank, i in enumerate(order):
        out[i] = min(1.0, min(m * p[j] / (r + 1) for r, j in enumerate(order) if r >= rank))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_match_their_definitions(seed):
    p = list(np.random.default_rng(seed).uniform(0, 0.2, 7))
    np.testing.assert_allclose(metrics.holm(p), holm_by_definition(p), atol=1e-15)
    np.testing.assert_allclose(metrics.adjust_p(p), holm_by_definition(p), atol=1e-15)
    np.testing.assert_allclose(metrics.adjust_p(p, "bh"), bh_by_definition(p), atol=1e-12)


def test_rows_without_p_do_not_count_in_the_family():
    out = metrics.adjust_p([0.01, None, 0.04, math.nan])
    assert out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)
    assert math.isnan(out[1]) and math.isnan(out[3])
    with pytest.raises(ValueError, match="holm"):
        metrics.adjust_p([0.1], "bonferroni")


def test_noninferiority_and_equivalence_from_one_sided_bounds():
    result = {"delta": -0.002, "se": 0.001, "df": math.inf}
    r = metrics.noninferiority(result, "64 px", "224 px", margin=0.01)
    lower = -0.002 - stats.norm.ppf(0.95) * 0.001
    assert r["lower"] == pytest.approx(lower) and r["noninferior"] and r["equivalent"] is None
    assert r["text"] == f"64 px is non-inferior to 224 px at margin 0.01 (lower bound {lower:.3f})"
    assert r["p_noninferior"] == pytest.approx(stats.norm.sf(0.008 / 0.001))
    # a t bound with few degrees of freedom is wider
    t = metrics.noninferiority(result | {"df": 4.0}, "64 px", "224 px", margin=0.01)
    assert t["lower"] == pytest.approx(-0.002 - stats.t.ppf(0.95, 4) * 0.001)
    worse = metrics.noninferiority({"delta": -0.009, "se": 0.004, "df": 8.0, "scope": "runs"}, "64 px", "224 px",
                                   margin=0.01, equivalence=True)
    assert not worse["noninferior"] and not worse["equivalent"]
    assert worse["text"].startswith("non-inferiority of 64 px to 224 px at margin 0.01 not shown (lower bound -0.016)")
    assert worse["text"].endswith("(these two runs, not their recipes)")
    same = metrics.noninferiority({"delta": 0.001, "se": 0.002, "df": 30.0}, "a", "b", margin=0.01, equivalence=True)
    upper = 0.001 + stats.t.ppf(0.95, 30) * 0.002
    assert same["equivalent"] and same["upper"] == pytest.approx(upper) and "equivalent within ±0.01" in same["text"]
    assert same["p_equivalence"] == pytest.approx(max(stats.t.sf(0.011 / 0.002, 30), stats.t.cdf(-0.009 / 0.002, 30)))
    with pytest.raises(ValueError, match="margin"):
        metrics.noninferiority(result, "a", "b", margin=0)


def _power(var, df, effect, alpha=0.05):
    """Power by simulation-free definition: P(|T| > t_crit) under the shift effect / se (the far tail ignored)."""
    se = math.sqrt(var)
    return stats.t.sf(stats.t.ppf(1 - alpha / 2, df) - effect / se, df)


def test_seeds_needed_is_the_smallest_number_reaching_the_power():
    result = {"image_var": 0.004 ** 2, "seed_var_a": 0.017 ** 2, "seed_var_b": 0.015 ** 2, "n_images": 381,
              "n_runs_a": 5, "n_runs_b": 5}
    r = metrics.seeds_needed(result, effect=0.02)
    k = r["seeds_per_group"]
    seed_var = 0.017 ** 2 + 0.015 ** 2
    assert _power(0.004 ** 2 + seed_var / k, 2 * k - 2, 0.02) >= 0.8 > _power(0.004 ** 2 + seed_var / (k - 1),
                                                                              2 * k - 4, 0.02)
    assert r["text"].startswith(f"about {k} seeds per group") and r["images"] is None
    assert r["power_now"] == pytest.approx(_power(0.004 ** 2 + seed_var / 5, 8, 0.02))
    # when the images' variance alone is too large, more seeds cannot do it: more test images would
    limited = metrics.seeds_needed(result | {"image_var": 0.01 ** 2, "seed_var_a": 0.005 ** 2, "seed_var_b": 0.005 ** 2},
                                   effect=0.01, max_seeds=50)
    want = (0.01 / (stats.norm.ppf(0.975) + stats.norm.ppf(0.8))) ** 2
    assert limited["seeds_per_group"] is None and "test set is the limit" in limited["text"]
    assert limited["images"] == math.ceil(0.01 ** 2 * 381 / (want - 2 * 0.005 ** 2 / 10))
    assert "10 seeds per group" in limited["text"]
    # more seeds where 10 seeds' spread would take more than half of what 80% power allows
    more = metrics.seeds_needed(result | {"image_var": 0.01 ** 2, "seed_var_a": 0.01 ** 2, "seed_var_b": 0.01 ** 2},
                                effect=0.01, max_seeds=50)
    assert more["images"] == math.ceil(0.01 ** 2 * 381 / (want - 2 * 0.01 ** 2 / 50)) and "50 seeds" in more["text"]
    wide = metrics.seeds_needed(result | {"image_var": 0.01 ** 2}, effect=0.01, max_seeds=50)
    assert wide["images"] is None and "cannot be resolved with 50 seeds" in wide["text"]
    unknown = metrics.seeds_needed({"image_var": 1e-5, "seed_var_a": math.nan, "seed_var_b": math.nan,
                                    "n_images": 100}, effect=0.01)
    assert unknown["seeds_per_group"] is None and "2 or more seeds" in unknown["text"]
