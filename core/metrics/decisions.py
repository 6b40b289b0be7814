"""What paired results let one claim: adjusted p within a family, non-inferiority and equivalence, seeds needed.

Every function here reads a core.metrics.paired result (its ``delta``, ``se``, ``df``, variance
parts), so the verdicts use the same two-level variance as the interval they sit next to.
docs/metrics.md says what each verdict claims.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = ["CORRECTIONS", "adjust_p", "holm", "noninferiority", "noninferiority_text", "seeds_needed"]

Correction = Literal["holm", "bh"]
PLAN_SEEDS = 10  # seeds per group assumed when the test set, not the seeds, limits what can be resolved
CORRECTIONS = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control).

    Args:
        p: (m,) raw p-values, all finite.

    Returns:
        (m,) adjusted p-values in the input order: the i-th smallest is multiplied by m - i + 1
        (i from 1), made non-decreasing in that order, and capped at 1.

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def adjust_p(p: Sequence[float | None], method: Correction = "holm") -> list[float]:
    """p adjusted within one family; a missing or NaN p (a row not compared) stays NaN and does not count.

    Args:
        p: (m,) raw p-values of the family's comparisons.
        method: "holm" (default) or "bh" (Benjamini-Hochberg, scipy.stats.false_discovery_control).

    Returns:
        m adjusted p-values as plain floats, in the input order.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"method must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    raw = np.array([math.nan if v is None else float(v) for v in p])
    out = np.full(raw.size, math.nan)
    ok = np.isfinite(raw)
    if ok.any():
        out[ok] = holm(raw[ok]) if method == "holm" else stats.false_discovery_control(raw[ok], method="bh")
    return [float(v) for v in out]


def _bounds(result: Mapping[str, Any], alpha: float) -> tuple[float, float]:
    """(lower, upper) one-sided 1 - alpha confidence bounds of a result's delta."""
    delta, se, df = result["delta"], result.get("se"), result.get("df")
    if delta is None or se is None or not (math.isfinite(delta) and math.isfinite(se)):
        return math.nan, math.nan
    q = float(stats.t.ppf(1 - alpha, math.inf if df is None else df))
    return delta - q * se, delta + q * se


def noninferiority(result: Mapping[str, Any], name_a: str, name_b: str, margin: float, alpha: float = 0.05,
                   equivalence: bool = False, digits: int = 3) -> dict[str, Any]:
    """Is a no worse than b by more than `margin` AUC (and, with `equivalence`, no better by more either)?

    a is non-inferior to b when the one-sided 1 - alpha lower bound of AUC(a) - AUC(b) lies above
    -margin (a one-sided test at level alpha); equivalent (TOST, two one-sided tests) when also the
    upper bound lies below +margin, i.e. the 1 - 2 * alpha two-sided interval lies inside the margins.

    Args:
        result: a core.metrics.paired result (``delta``, ``se``, ``df``).
        name_a, name_b: how the text calls a and b (e.g. "64 px", "224 px").
        margin: the AUC loss one accepts, > 0.
        alpha: one-sided level.
        equivalence: also test the upper margin.
        digits: decimals in the text.

    Returns:
        dict: ``margin``, ``lower``, ``upper``, ``noninferior`` (bool), ``p_noninferior`` (one-sided p
        of "a worse by margin or more"), ``p_equivalence`` (TOST p: the larger of the two one-sided
        p), ``equivalent`` (bool, or None when not asked), ``text``.

    >>> noninferiority({"delta": -0.002, "se": 0.001, "df": math.inf}, "64 px", "224 px", 0.01)["text"]
    '64 px is non-inferior to 224 px at margin 0.01 (lower bound -0.004)'
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    lower, upper = _bounds(result, alpha)
    out: dict[str, Any] = {"margin": margin, "lower": lower, "upper": upper, "alpha": alpha, "noninferior": False,
                           "p_noninferior": math.nan, "p_equivalence": math.nan, "equivalent": None}
    if not math.isfinite(lower):
        return out | {"text": f"non-inferiority of {name_a} to {name_b} cannot be judged: no difference computed"}
    delta, se, df = result["delta"], result["se"], result.get("df") or math.inf
    if se > 0:
        out["p_noninferior"] = float(stats.t.sf((delta + margin) / se, df))
        out["p_equivalence"] = max(out["p_noninferior"], float(stats.t.cdf((delta - margin) / se, df)))
    else:
        out["p_noninferior"] = float(delta <= -margin)
        out["p_equivalence"] = float(abs(delta) >= margin)
    out["noninferior"] = bool(lower > -margin)
    out["equivalent"] = bool(out["noninferior"] and upper < margin) if equivalence else None
    return out | {"text": noninferiority_text(name_a, name_b, margin, lower, upper, out["noninferior"],
                                              out["equivalent"], result.get("scope"), digits=digits)}


def noninferiority_text(name_a: str, name_b: str, margin: float, lower: float, upper: float, noninferior: bool,
                        equivalent: bool | None = None, scope: str | None = None, note: str = "",
                        digits: int = 3) -> str:
    """The sentence of a non-inferiority (and equivalence) decision; `note` (e.g. an adjusted p) goes after the
    bound. ``noninferiority`` and core.study.comparisons (whose decision uses the family-adjusted p) share it."""
    f = f"{{:.{digits}f}}"
    bound = f"lower bound {f.format(lower)}{note}"
    text = (f"{name_a} is non-inferior to {name_b} at margin {margin:g} ({bound})" if noninferior else
            f"non-inferiority of {name_a} to {name_b} at margin {margin:g} not shown ({bound})")
    if equivalent is not None:
        text += (f"; equivalent within ±{margin:g} ({f.format(lower)} to {f.format(upper)})" if equivalent
                 else f"; equivalence within ±{margin:g} not shown ({f.format(lower)} to {f.format(upper)})")
    return text + (" (these two runs, not their recipes)" if scope == "runs" else "")


def _power(se: float, df: float, effect: float, alpha: float) -> float:
    """Power of the two-sided t test at level alpha to find `effect` given the standard error `se`."""
    q = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.t.sf(q - effect / se, df))


def seeds_needed(result: Mapping[str, Any], effect: float, power: float = 0.8, alpha: float = 0.05,
                 max_seeds: int = 100) -> dict[str, Any]:
    """Roughly how many seeds per group (and, where images are the limit, test images) would resolve `effect`.

    From the result's variance parts: a difference with k seeds per group on n test images has
    variance ``image_var * N / n + (seed_var_a + seed_var_b) / k`` (N the images it was measured on),
    tested two-sided by t with 2k - 2 degrees of freedom. The smallest k reaching `power` at N images
    is returned; when no k up to `max_seeds` does, the image part is the limit and ``images`` says
    how many test images would, with the fewest of 10, 20, 50 or `max_seeds` seeds per group whose
    seed spread leaves room for it.

    Args:
        result: a core.metrics.paired result with ``image_var``, ``seed_var_a``, ``seed_var_b``, ``n_images``.
        effect: the AUC difference to resolve (e.g. the non-inferiority margin), > 0.
        power: wanted power.
        alpha: two-sided level.
        max_seeds: the most seeds per group considered.

    Returns:
        dict: ``seeds_per_group`` (int, or None when seed spread is unknown or not enough),
        ``images`` (int or None), ``power_now`` (power with the runs and images compared), ``text``.
    """
    if not effect > 0:
        raise ValueError(f"effect must be positive, got {effect}")
    image_var, n = result.get("image_var"), result.get("n_images")
    seeds = [v for v in (result.get("seed_var_a"), result.get("seed_var_b")) if v is not None and math.isfinite(v)]
    out: dict[str, Any] = {"effect": effect, "power": power, "seeds_per_group": None, "images": None,
                           "power_now": math.nan}
    if image_var is None or not math.isfinite(image_var) or not seeds:
        return out | {"text": "seeds needed unknown: it takes 2 or more seeds in a group to measure seed spread"}
    seed_var = sum(seeds) * 2 / len(seeds)  # seed_var_a + seed_var_b, one group's standing for both if needed
    k_now = min(result.get("n_runs_a", 2), result.get("n_runs_b", 2))
    out["power_now"] = _power(math.sqrt(image_var + seed_var / max(k_now, 1)) or 1e-12, max(2 * k_now - 2, 1),
                              effect, alpha)
    for k in range(2, max_seeds + 1):
        if _power(math.sqrt(image_var + seed_var / k) or 1e-12, 2 * k - 2, effect, alpha) >= power:
            return out | {"seeds_per_group": k, "text": f"about {k} seeds per group would resolve a difference of "
                          f"{effect:g} with {power:.0%} power on these {n:,} test images"}
    # Seeds alone cannot do it: the test images are the limit. Say how many images would, with the
    # fewest seeds (10, 20, 50, max_seeds) whose spread takes at most half of the variance that 80%
    # power allows (normal approximation; the image variance scales as 1 / n).
    wanted = (effect / (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))) ** 2
    for k in sorted({k for k in (PLAN_SEEDS, 2 * PLAN_SEEDS, 5 * PLAN_SEEDS) if k < max_seeds} | {max_seeds}):
        if seed_var / k <= wanted / 2:
            out["images"] = math.ceil(image_var * n / (wanted - seed_var / k))
            text = (f"seeds alone cannot resolve {effect:g} on these {n:,} test images (the test set is the limit): "
                    f"about {out['images']:,} test images with {k} seeds per group would, with {power:.0%} power")
            break
    else:
        text = f"a difference of {effect:g} cannot be resolved with {max_seeds} seeds per group"
    return out | {"text": text}
