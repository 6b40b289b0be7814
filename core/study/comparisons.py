"""Which comparisons the resolution question makes, declared as families, and each comparison's verdicts.

The question "how much resolution can I trade away?" is asked of every size against one reference
size (the largest, unless given): that is the *primary* family. Adjacent sizes and other candidates
are *exploratory*, a family of their own. Within each family p is adjusted (Holm by default,
Benjamini-Hochberg on request), and a verdict rests on the adjusted p; raw and adjusted p are both
kept. Each primary row also answers the non-inferiority question (is the smaller size worse by less
than `margin`?, Holm-adjusted over the family as well) and says roughly how many seeds per group would
resolve a difference of the margin. The Compare page and the study report both build their
Differences through ``compare``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from core import metrics
from core.runs import groups as G

PRIMARY, EXPLORATORY = "primary", "exploratory"
DEFAULT_MARGIN = 0.01  # AUC a smaller size may lose and still count as good enough, unless the user sets one


def resolution_plan(keys: Sequence[tuple[Hashable, int]], reference_size: int | None = None) -> list[dict[str, Any]]:
    """The comparisons of the resolution question over seed groups keyed (recipe, size).

    Args:
        keys: (recipe, size) of every seed group.
        reference_size: the size every other size is compared against; default each recipe's largest.

    Returns:
        dicts ``family, kind, a, b`` (a and b keys): per recipe, primary "vs N px" (each size against
        the reference), then exploratory "vs previous size" (adjacent sizes that do not involve the reference).
    """
    primary: list[dict[str, Any]] = []
    exploratory: list[dict[str, Any]] = []
    for recipe in dict.fromkeys(r for r, _ in keys):
        sizes = sorted(s for r, s in keys if r == recipe)
        ref = reference_size if reference_size in sizes else sizes[-1]
        primary += [{"family": PRIMARY, "kind": f"vs {ref} px", "a": (recipe, s), "b": (recipe, ref)}
                    for s in sizes if s != ref]
        # a pair with the reference in it is already a primary comparison
        exploratory += [{"family": EXPLORATORY, "kind": "vs previous size", "a": (recipe, big), "b": (recipe, small)}
                        for small, big in zip(sizes, sizes[1:]) if ref not in (small, big)]
    return primary + exploratory


def _row(res: Mapping[str, Any], names: tuple[str, str], margin: float, alpha: float) -> dict[str, Any]:
    """A compared row's numbers from a core.metrics paired result (NaN per-class values as None)."""
    ni = metrics.noninferiority(res, *names, margin=margin, alpha=alpha, equivalence=True)
    need = metrics.seeds_needed(res, effect=margin, alpha=alpha)
    return {
        "paired": True, "delta": res["delta"], "ci_low": res["ci"][0], "ci_high": res["ci"][1],
        "p_value": res["p_value"], "se": res["se"], "df": res["df"], "scope": res["scope"],
        "auc_a": res["auc_a"], "auc_b": res["auc_b"], "n_images": res["n_images"], "n_boot_used": res["n_boot_used"],
        "classes_excluded": [f"{e['class']} ({e['reason']})" for e in res["excluded"]],
        "lower_bound": ni["lower"], "upper_bound": ni["upper"], "p_noninferior": ni["p_noninferior"],
        "p_equivalence": ni["p_equivalence"], "seeds_needed": need["text"],
        "seeds_per_group": need["seeds_per_group"], "images_needed": need["images"],
        "per_class": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in c.items()}
                      for c in res["per_class"]],
    }


def _decide(rows: list[dict[str, Any]], results: list[Mapping[str, Any] | None], correction: str, margin: float,
            alpha: float, equivalence: bool) -> None:
    """Adjust p within each family and write each row's verdict from the adjusted p; in the primary family
    also non-inferiority (and equivalence), their one-sided p adjusted over the family the same way."""
    name = metrics.CORRECTIONS[correction].split(" ")[0]
    for family in dict.fromkeys(r["family"] for r in rows):
        members = [i for i, r in enumerate(rows) if r["family"] == family]
        adjusted = metrics.adjust_p([rows[i].get("p_value") for i in members], correction)
        adjusted_ni = metrics.adjust_p([rows[i].get("p_noninferior") for i in members], correction)
        adjusted_eq = metrics.adjust_p([rows[i].get("p_equivalence") for i in members], correction)
        for i, p, p_ni, p_eq in zip(members, adjusted, adjusted_ni, adjusted_eq):
            row, res = rows[i], results[i]
            row["p_adjusted"], row["correction"] = p, correction
            if res is None:
                continue
            row["verdict"] = metrics.verdict(res, row["a"], row["b"], p_adjusted=p, alpha=alpha)
            row["winner"] = metrics.winner(res, p_adjusted=p, alpha=alpha)
            if family != PRIMARY:
                continue
            row["p_noninferior_adjusted"], row["noninferior"] = p_ni, bool(p_ni < alpha)
            row["equivalent"] = bool(p_eq < alpha) if equivalence else None
            row["noninferiority"] = metrics.noninferiority_text(
                row["a"], row["b"], margin, row["lower_bound"], row["upper_bound"], row["noninferior"],
                row["equivalent"], row["scope"], note=f", {name}-adjusted one-sided p {p_ni:.2g}")


def compare(plan: Sequence[Mapping[str, Any]], members: Mapping[Hashable, Sequence[str]],
            names: Mapping[Hashable, str], n_boot: int = 2000, seed: int = 0, correction: str = "holm",
            margin: float = DEFAULT_MARGIN, alpha: float = 0.05, min_positives: int = metrics.MIN_POSITIVES,
            equivalence: bool = False, difference: Callable[..., dict] | None = None) -> list[dict[str, Any]]:
    """Every comparison of `plan` as a row with its difference, raw and family-adjusted p, and verdicts.

    Args:
        plan: dicts ``family, kind, a, b`` (e.g. from ``resolution_plan``), a and b keys of `members`.
        members: key -> the run folders of that seed group (core.runs.groups.SeedGroup.runs).
        names: key -> how verdicts call the group ("64 px", "res-cnn 64 px").
        n_boot, seed, min_positives: as in core.metrics.seed_group_difference.
        correction: "holm" or "bh", applied within each family.
        margin: the non-inferiority margin and the difference seeds_needed is sized for.
        alpha: level of every test (non-inferiority one-sided).
        equivalence: primary rows also test equivalence within ±margin (TOST).
        difference: called as ``difference(runs_a, runs_b, n_boot=, seed=, min_positives=)``; default
            core.runs.groups.group_difference (the Compare page passes a cached one).

    Returns:
        one dict per plan item: ``family, kind, a, b, n_runs_a, n_runs_b, paired``; when paired
        ``delta, ci_low, ci_high, p_value, p_adjusted, correction, se, df, scope, auc_a, auc_b,
        n_images, n_boot_used, classes_excluded`` (each "name (why)"), ``lower_bound, p_noninferior,
        seeds_needed`` (text), ``seeds_per_group, images_needed, per_class``; primary rows also
        ``noninferior, noninferiority`` (text), ``p_noninferior_adjusted``, ``equivalent`` (None unless
        `equivalence`); every paired row ``upper_bound, p_equivalence, winner`` (core.metrics.winner); and
        ``verdict`` (or why the groups were not compared).
    """
    difference = difference or G.group_difference
    rows, results = [], []
    for item in plan:
        a, b = item["a"], item["b"]
        row: dict[str, Any] = {"family": item["family"], "kind": item["kind"], "a": names[a], "b": names[b],
                               "n_runs_a": len(members[a]), "n_runs_b": len(members[b])}
        try:
            res = difference(list(members[a]), list(members[b]), n_boot=n_boot, seed=seed, min_positives=min_positives)
        except metrics.PairingError as e:
            rows.append(row | {"paired": False, "verdict": f"not compared: {e}"})
            results.append(None)
            continue
        rows.append(row | _row(res, (names[a], names[b]), margin, alpha))
        results.append(res)
    _decide(rows, results, correction, margin, alpha, equivalence)
    return rows
