"""The report's "Differences": test-AUC differences between sizes (and candidates) in declared families.

Runs are grouped into seed groups by core.runs.groups (recipe and size, each seed once) and named by
their study candidate; comparisons, their families, adjusted p and verdicts are core.study.comparisons',
the same as the Compare page's. The primary family is every size of a candidate against its largest
size (the resolution question); adjacent sizes and candidates against seed-cnn (and, with more than two
candidates, against the first) are exploratory. A group's AUC is the mean of its seeds' AUCs, and the
interval carries seed-to-seed and image variance (core.metrics.seed_group_difference).
"""
from __future__ import annotations

from typing import Any

from core import metrics
from core.runs import groups as G
from core.study import comparisons as C

METHOD = "mean-auc"
BASELINE = "seed-cnn"  # the small reference CNN every candidate is compared against
FAMILY_TEXT = {
    C.PRIMARY: "every size of a candidate against its largest size (the resolution question)",
    C.EXPLORATORY: "adjacent sizes, and candidates against the baseline at the same size",
}


def group_name(candidate: str, size: int, several: bool) -> str:
    return f"{candidate} {size} px" if several else f"{size} px"


def candidate_plan(keys: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Exploratory comparisons of candidates at the same size: each against seed-cnn (the reference recipe's,
    else another), and with more than two candidates against the first one given too."""
    candidates = list(dict.fromkeys(c for c, _ in keys))
    if len(candidates) < 2:
        return []
    baseline = next((c for c in sorted(candidates, key=len) if c.split()[0] == BASELINE), None)
    references = [c for c in dict.fromkeys([baseline, candidates[0]] if len(candidates) > 2 else [baseline]) if c]
    out = []
    for ref in references:
        for cand in candidates:
            if cand in (ref, baseline):
                continue
            out += [{"family": C.EXPLORATORY, "kind": "vs " + ref, "a": (cand, size), "b": (ref, size)}
                    for c, size in sorted(keys) if c == cand and (ref, size) in keys]
    return out


def differences(records: list[dict], n_boot: int = 2000, seed: int = 0, correction: str = "holm",
                margin: float = C.DEFAULT_MARGIN, reference_size: int | None = None,
                equivalence: bool = False) -> dict[str, Any]:
    """Every comparison as a row (core.study.comparisons.compare), with what the families are.

    Args:
        records: core.study.records' run records with their "candidate" set.
        n_boot, seed: image resamples and their seed.
        correction: "holm" or "bh", within each family.
        margin: the non-inferiority margin (AUC) of the primary family, and what seeds needed is sized for.
        reference_size: the size the primary family compares against (default each candidate's largest).
        equivalence: the primary family also tests equivalence within ±margin (TOST).
    """
    candidate = {r["run_dir"]: r["candidate"] for r in records}
    members: dict[tuple[str, int], list[str]] = {}
    for g in G.seed_groups({r["run_dir"]: r["train_config"] for r in records}):
        members.setdefault((candidate[g.runs[0]], g.size), []).extend(g.runs)
    keys = list(members)
    several = len({c for c, _ in keys}) > 1
    names = {k: group_name(*k, several) for k in keys}
    plan = C.resolution_plan(keys, reference_size) + candidate_plan(keys)
    rows = C.compare(plan, members, names, n_boot=n_boot, seed=seed, correction=correction, margin=margin,
                     equivalence=equivalence)
    return {"method": METHOD, "method_text": ("seeds combined by mean AUC (a group's AUC is the mean of its seeds' "
                                              "test AUCs); the interval and p carry seed-to-seed and image variance "
                                              "(Student t, Welch-Satterthwaite df); one run per group compares those "
                                              "runs only"),
            "n_boot": n_boot, "seed": seed, "baseline": BASELINE, "correction": correction,
            "correction_text": metrics.CORRECTIONS[correction], "margin": margin, "equivalence": equivalence,
            "min_positives": metrics.MIN_POSITIVES, "families": FAMILY_TEXT, "rows": rows}
