"""Group-sequential decisions: looking at a growing number of seeds after every round without inflating the error.

Re-testing at the full level alpha after every new seed and stopping at the first "significant" answer
calls a true null decided far more often than alpha (every look is another chance). Here each look k
of a planned K uses a stricter nominal level, from an O'Brien-Fleming-type Lan-DeMets alpha-spending
function ``alpha(t) = 2 * (1 - Phi(z_{1 - alpha / 2} / sqrt(t)))`` of the information fraction t: almost
nothing is spent at the first looks (few seeds, noisy), nearly the whole alpha at the last, so the
final look's level is close to the fixed-sample one. Lan-DeMets spending, unlike fixed Pocock or
O'Brien-Fleming tables, allows stopping early or at an unplanned look: what was not spent is simply
kept. The boundary at look k is the z whose crossing probability there, having not crossed before,
equals ``alpha(t_k) - alpha(t_{k-1})`` under the canonical joint distribution (Z_k with correlation
sqrt(t_j / t_k)), computed by the standard recursive numerical integration over the surviving
Brownian paths (Jennison & Turnbull 2000, ch. 19).

Information fraction: with n of at most N seeds per group it is taken as n / N, the seed part of the
variance. The test images are the same at every look, so the image part of the variance does not
shrink: the true correlation between looks is sqrt(I_j / I_k) >= sqrt(n_j / n_k). By Slepian's
inequality, larger correlations with the same boundaries lower the chance of crossing any of them, so
n / N is conservative (tests/test_sequential.py measures it with image variance in the simulation).
Each look's statistic is the seed-aware Student t of core.metrics.paired, compared with the nominal
level through its one-sided p (the "significance level" form for an estimated variance, Jennison &
Turnbull ch. 11). With few seeds that form is slightly liberal; core.study.sequential caps the degrees
of freedom to keep it near alpha (tests/test_sequential.py measures it; docs/study.md gives the small excess
left when the seed spread dominates).

Several comparisons (one family) are decided with Holm's procedure made group-sequential (Maurer &
Bretz 2013, the graphical approach): each open hypothesis gets alpha / (open hypotheses); a rejection
hands its alpha to the rest, whose boundaries are recomputed at the larger level and may be checked at
every look so far. That controls the family-wise error over all looks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, optimize, stats

__all__ = ["boundaries", "fractions", "nominal_levels", "one_sided_p", "sequential_holm", "spent"]

_GRID = 801  # points of the numerical integration; boundaries agree with 1201 to about 1e-4 in z


def spent(alpha: float, t: float) -> float:
    """O'Brien-Fleming-type Lan-DeMets spending: one-sided alpha spent by information fraction t (0 < t <= 1).

    >>> round(spent(0.05, 1.0), 6)
    0.05
    """
    return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t)))


def fractions(max_seeds: int) -> tuple[float, ...]:
    """Information fractions of the planned looks: after 2, 3, ..., `max_seeds` seeds per group (a look needs
    two seeds: with one the seed spread is unknown and the interval covers only those runs)."""
    if max_seeds < 2:
        raise ValueError(f"max_seeds must be at least 2, got {max_seeds}")
    return tuple(n / max_seeds for n in range(2, max_seeds + 1))


@lru_cache(maxsize=64)
def boundaries(alpha: float, fracs: tuple[float, ...]) -> tuple[float, ...]:
    """Upper z boundaries c_1..c_K, one per look at information fractions `fracs` (increasing, the last 1
    for the planned end), spending `alpha` one-sided by ``spent``.

    >>> [round(c, 3) for c in boundaries(0.05, (2 / 3, 1.0))]
    [2.135, 1.694]
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    out: list[float] = []
    # The surviving paths' mass below this is negligible (t <= 1); a fixed floor also makes the boundaries
    # of the first looks the same whatever looks follow (as Lan-DeMets spending promises).
    low = -10.0
    w = density = None
    before = 0.0
    for k, t in enumerate(fracs):
        step = spent(alpha, t) - before
        before += step
        if k == 0:
            c = float(stats.norm.isf(step))
        else:
            d = math.sqrt(t - fracs[k - 1])
            grid, dens = w, density  # bound for the closure below

            def crossing(x: float) -> float:
                return float(integrate.trapezoid(dens * stats.norm.sf((x * math.sqrt(t) - grid) / d), grid)) - step
            c = float(optimize.brentq(crossing, -5, 40, xtol=1e-9))
        out.append(c)
        # Density (on the Brownian scale W = Z sqrt(t)) of the paths that have not crossed by look k.
        new_w = np.linspace(low, c * math.sqrt(t), _GRID)
        if k == 0:
            density = stats.norm.pdf(new_w, 0, math.sqrt(t))
        else:
            kernel = stats.norm.pdf((new_w[:, None] - w[None, :]) / d) / d
            density = integrate.trapezoid(density[None, :] * kernel, w, axis=1)
        w = new_w
    return tuple(out)


def nominal_levels(alpha: float, fracs: Sequence[float]) -> list[float]:
    """The one-sided nominal p level of each look: a look decides when its one-sided p is at most this."""
    return [float(stats.norm.sf(c)) for c in boundaries(float(alpha), tuple(float(t) for t in fracs))]


def one_sided_p(delta: ArrayLike, se: ArrayLike, df: ArrayLike, null: float, greater: bool) -> np.ndarray:
    """One-sided Student t p (elementwise) of H0 "difference <= null" (`greater`: the claim is difference > null)
    or of H0 "difference >= null" (the claim is difference < null); NaN where there is no standard error."""
    delta, se, df = (np.asarray(x, dtype=float) for x in (delta, se, df))
    ok = np.isfinite(delta) & np.isfinite(se) & (se > 0)
    t = np.where(ok, (delta - null) / np.where(ok, se, 1.0), 0.0)
    p = stats.t.sf(t, df) if greater else stats.t.cdf(t, df)
    return np.where(ok, p, np.nan)


def sequential_holm(p: Sequence[Sequence[float]], alpha: float, fracs: Sequence[float]) -> list[bool]:
    """Which hypotheses of one family are rejected after the looks so far, family-wise error at most `alpha`.

    Args:
        p: (looks so far, m) one-sided p of every hypothesis at every look (NaN: not tested there).
        alpha: family-wise one-sided level over all planned looks.
        fracs: information fractions of all planned looks (``fractions``); only the first len(p) are used.

    Returns:
        m bools. Holm, group-sequential: the open hypotheses share alpha equally; one whose p at any look
        so far is at most that look's nominal level at its share is rejected, and its share is handed on.
    """
    p = np.asarray(p, dtype=float).reshape(len(p), -1)
    if len(p) > len(fracs):
        raise ValueError(f"{len(p)} looks but only {len(fracs)} planned")
    rejected = np.zeros(p.shape[1], dtype=bool)
    while True:
        open_ = ~rejected & np.isfinite(p).any(axis=0)
        if not open_.any():
            break
        levels = np.array(nominal_levels(alpha / open_.sum(), fracs)[:len(p)])
        hit = open_ & (np.nan_to_num(p, nan=2.0) <= levels[:, None]).any(axis=0)
        if not hit.any():
            break
        rejected |= hit
    return [bool(r) for r in rejected]
