"""The until-decided study's rule: after each round of seeds, which sizes are decided against the reference.

Every size is compared with the reference (the largest) on the primary family's seed-aware paired
difference (core.study.comparisons.compare: mean test AUC of the size's first n seeds minus the
reference's, Student t with Welch-Satterthwaite df). Each comparison can end in one of three claims,
each a one-sided hypothesis test decided group-sequentially (core.metrics.sequential: O'Brien-Fleming-type
Lan-DeMets boundaries over the planned looks, Holm over the family per claim):

- "superior": the size is better than the reference (difference > 0);
- "non-inferior": it loses less than the margin (difference > -margin);
- "inferior": it loses more than the margin (difference < -margin);

and is "undecided" until one is shown. A look needs two seeds per size (the seed spread), so the first
look is after round 2 and the planned looks are after rounds 2..max_seeds. The verdicts are a pure
function of the looks' numbers, so a resumed study decides exactly as an uninterrupted one.
docs/study.md explains the design and why its error stays at alpha.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core import metrics
from core.study.comparisons import PRIMARY
from core.train.cost import format_seconds

SUPERIOR, NONINFERIOR, INFERIOR, UNDECIDED = "superior", "non-inferior", "inferior", "undecided"
ALPHA = 0.05  # one-sided level of each claim, family-wise over the sizes and all looks
STOPS = {"decided": "every comparison is decided", "budget": "the next round would not fit the budget",
         "max-seeds": "the planned maximum number of seeds was reached"}
LOOK_KEYS = ("a", "b", "delta", "se", "df", "ci_low", "ci_high", "seeds_needed", "seeds_per_group")


def look(rows: Sequence[Mapping[str, Any]], n_seeds: int) -> dict[str, Any]:
    """What a look keeps of the primary rows of core.study.comparisons.compare (made with `n_seeds` seeds per size)."""
    return {"n_seeds": n_seeds, "comparisons": [{k: r.get(k) for k in LOOK_KEYS} for r in rows
                                                if r.get("family") == PRIMARY]}


def claims_p(looks: Sequence[Mapping[str, Any]], margin: float) -> dict[str, np.ndarray]:
    """One-sided p of each claim (superior, non-inferior, inferior): (looks, comparisons) arrays.

    The degrees of freedom are Welch-Satterthwaite's (compare's) but at most 2 (n - 1), the pooled t's for
    n seeds per size: with 2 or 3 seeds Welch's estimated df often exceeds what two groups' spread can
    support, and the early looks' tiny nominal levels sit in the tail where that matters (at n = 2, margin 0.02,
    seed sd 0.01, image se 0.004, the uncapped t crossed the first boundary 1.5 times its level with 3 planned
    looks and about 170 times with 10, over 400,000 simulated looks; tests/test_sequential.py checks the cap).
    """
    def numbers(key: str) -> np.ndarray:
        return np.array([[math.nan if c.get(key) is None else c[key] for c in lk["comparisons"]] for lk in looks],
                        dtype=float).reshape(len(looks), -1)
    delta, se, df = numbers("delta"), numbers("se"), numbers("df")
    cap = np.array([2.0 * (lk["n_seeds"] - 1) for lk in looks])[:, None]
    df = np.minimum(np.where(np.isnan(df), np.inf, df), cap)
    tests = {SUPERIOR: (0.0, True), NONINFERIOR: (-margin, True), INFERIOR: (-margin, False)}
    return {claim: metrics.one_sided_p(delta, se, df, null, greater) for claim, (null, greater) in tests.items()}


def verdicts(looks: Sequence[Mapping[str, Any]], margin: float, max_seeds: int,
             alpha: float = ALPHA) -> list[str]:
    """Each comparison's verdict after `looks` (every look so far, in order; each from ``look``).

    Args:
        looks: dicts ``n_seeds`` (2..max_seeds, increasing), ``comparisons`` (the same comparisons in the
            same order at every look, each ``delta, se, df``).
        margin: the AUC a size may lose and still be non-inferior, > 0.
        max_seeds: the planned largest number of seeds per size: the information fraction of a look is
            n_seeds / max_seeds.
        alpha: family-wise one-sided level of each claim over all looks.

    Returns:
        per comparison "superior", "non-inferior", "inferior" or "undecided" (superior before non-inferior:
        it says more).
    """
    if not looks:
        return []
    fracs = [lk["n_seeds"] / max_seeds for lk in looks]
    if any(not 0 < f <= 1 for f in fracs) or any(b <= a for a, b in zip(fracs, fracs[1:])):
        raise ValueError(f"looks must have increasing seeds per size up to {max_seeds}, got "
                         f"{[lk['n_seeds'] for lk in looks]}")
    shown = {claim: metrics.sequential_holm(p, alpha, fracs) for claim, p in claims_p(looks, margin).items()}
    out = []
    for i in range(len(looks[-1]["comparisons"])):
        out.append(next((claim for claim in (SUPERIOR, NONINFERIOR, INFERIOR) if shown[claim][i]), UNDECIDED))
    return out


def levels(n_comparisons: int, n_seeds: int, max_seeds: int, alpha: float = ALPHA) -> dict[str, float]:
    """The one-sided nominal p levels of the look after `n_seeds` seeds: ``first`` (Holm's first step,
    alpha / comparisons) and ``last`` (alpha, when one comparison is left open)."""
    k = n_seeds - 2
    fracs = metrics.fractions(max_seeds)
    return {"first": metrics.nominal_levels(alpha / max(n_comparisons, 1), fracs)[k],
            "last": metrics.nominal_levels(alpha, fracs)[k]}


def round_record(number: int, seeds: Sequence[int], looks: Sequence[Mapping[str, Any]], margin: float,
                 max_seeds: int, wall_s: float | None) -> dict[str, Any]:
    """What the study keeps of round `number` (its seeds so far, `looks` up to it, its wall cost)."""
    record: dict[str, Any] = {"round": number, "seeds": list(seeds), "n_seeds": len(seeds), "wall_s": wall_s}
    if not looks or looks[-1]["n_seeds"] != len(seeds):
        return record | {"look": None, "verdicts": None, "levels": None}
    comparisons = looks[-1]["comparisons"]
    return record | {"look": dict(looks[-1]), "verdicts": verdicts(looks, margin, max_seeds),
                     "levels": levels(len(comparisons), len(seeds), max_seeds)}


def outcome(rounds: Sequence[Mapping[str, Any]], stop: str | None) -> dict[str, Any]:
    """The study's answer from its rounds: each comparison's verdict, what is undecided, seeds needed, why it stopped."""
    last = next((r for r in reversed(rounds) if r.get("verdicts") is not None), None)
    if last is None:
        return {"stop": stop, "comparisons": [], "undecided": [], "decided": False}
    comparisons = []
    for c, verdict in zip(last["look"]["comparisons"], last["verdicts"]):
        need = c.get("seeds_per_group")
        more = None if need is None else max(need - last["n_seeds"], 0)
        comparisons.append({"a": c["a"], "b": c["b"], "verdict": verdict, "delta": c["delta"],
                            "ci_low": c["ci_low"], "ci_high": c["ci_high"], "seeds_needed": c["seeds_needed"],
                            "more_seeds": more})
    undecided = [c["a"] for c in comparisons if c["verdict"] == UNDECIDED]
    return {"stop": stop, "comparisons": comparisons, "undecided": undecided, "decided": not undecided}


def describe(c: Mapping[str, Any], margin: float) -> str:
    """A comparison's verdict in words."""
    a, b = c["a"], c["b"]
    return {SUPERIOR: f"{a} is superior to {b} (better)",
            NONINFERIOR: f"{a} is non-inferior to {b} (loses less than {margin:g} AUC)",
            INFERIOR: f"{a} is inferior to {b} (loses more than {margin:g} AUC)",
            UNDECIDED: f"{a} against {b} is undecided"}[c["verdict"]]


def markdown(seq: Mapping[str, Any]) -> list[str]:
    """report.md's section of an until-decided study (the ``sequential`` record of study.json and summary.json)."""
    if not seq:
        return []
    margin, result = seq["margin"], seq.get("outcome") or {}
    L = ["## Until decided: sequential verdicts", "",
         f"Seeds were added one round at a time (one seed at every size) until every size was decided against "
         f"the reference, at margin {margin:g} AUC, family-wise one-sided level {seq['alpha']:g} per claim over up "
         f"to {seq['max_seeds']} seeds (O'Brien-Fleming-type alpha spending, Holm over the sizes; docs/study.md). "
         f"These verdicts decide; the Differences table below tests the last look at the fixed-sample level, "
         f"which after looking repeatedly would overstate the evidence.", ""]
    stop, n_seeds = result.get("stop"), max((r["n_seeds"] for r in seq.get("rounds", [])), default=0)
    L += [f"**Stopped: {stop}** ({STOPS.get(stop, 'not finished: run the same command to continue')}); "
          f"training time spent {_hours(seq.get('spent_s'))}, budget {_hours(seq.get('budget_s'))}.", ""]
    for c in result.get("comparisons", []):
        line = f"- **{c['verdict']}**: {describe(c, margin)}; difference {c['delta']:+.4f}"
        if c["verdict"] == UNDECIDED:
            # metrics.seeds_needed is a fixed-sample figure (80% power at the margin), not the sequential rule's
            line += f". Next decision, a fixed-sample estimate: {c['seeds_needed']}"
            if c.get("more_seeds"):
                past = n_seeds + c["more_seeds"] > seq["max_seeds"]
                line += f" ({c['more_seeds']} more seeds per size" + (
                    f", past this study's {seq['max_seeds']} at most)" if past else ")")
        L.append(line + ".")
    if result.get("undecided"):
        L += ["", "Still undecided: " + ", ".join(result["undecided"]) + "."]
    L += ["", "| round | seeds per size | nominal level (Holm first step / last) | verdicts |", "|---|---|---|---|"]
    for r in seq.get("rounds", []):
        if r.get("verdicts") is None:
            L.append(f"| {r['round']} | {r['n_seeds']} | no look (a look needs 2 seeds per size) | |")
            continue
        words = "; ".join(f"{c['a']}: {v}" for c, v in zip(r["look"]["comparisons"], r["verdicts"]))
        L.append(f"| {r['round']} | {r['n_seeds']} | {r['levels']['first']:.2g} / {r['levels']['last']:.2g} | {words} |")
    return L + [""]


def _hours(s: float | None) -> str:
    return "no budget" if s is None else format_seconds(s)
