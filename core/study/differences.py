"""The report's "Differences": paired, seed-grouped test-AUC differences between sizes and between candidates.

A group is the runs of one candidate (model and recipe) at one size; its seeds are combined with
core.metrics.seed_group_difference's "mean-auc" (a group's AUC is the mean of its runs' AUCs on
every resample), so a difference is exactly the difference of the two groups' mean test AUCs.
Two groups are compared only when every run scored the same test images: the same data folder
(its files at every size hold the same images, in the same order) and the same test labels
(core.metrics.check_same_images); otherwise the row says why it is missing.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from core.data import chestmnist as D
from core import metrics
from core.runs import record as runs

METHOD = "mean-auc"
BASELINE = "seed-cnn"  # the small reference CNN every candidate is compared against


def group_name(candidate: str, size: int, several: bool) -> str:
    return f"{candidate} {size} px" if several else f"{size} px"


def comparisons(groups: dict[tuple[str, int], list[dict]]) -> list[tuple[str, tuple[str, int], tuple[str, int]]]:
    """(kind, group a, group b) pairs: per candidate each size against the smallest and against the
    previous size; with several candidates, each against seed-cnn at the same size (and with more than
    two, each against the first candidate too)."""
    out = []
    candidates = list(dict.fromkeys(c for c, _ in groups))
    for cand in candidates:
        sizes = sorted(s for c, s in groups if c == cand)
        for i, size in enumerate(sizes[1:], start=1):
            out.append(("size vs smallest", (cand, size), (cand, sizes[0])))
            if i > 1:
                out.append(("size vs previous", (cand, size), (cand, sizes[i - 1])))
    # Every candidate against seed-cnn, and, with more than two candidates, against the first one given
    # (e.g. recipe variants against the recipe they vary), at the sizes both have.
    # The baseline is seed-cnn with the reference recipe, else seed-cnn with another one.
    baseline = next((c for c in sorted(candidates, key=len) if c.split()[0] == BASELINE), None)
    references = [c for c in dict.fromkeys([baseline, candidates[0]] if len(candidates) > 2 else [baseline]) if c]
    for ref in references if len(candidates) > 1 else []:
        for cand in candidates:
            if cand in (ref, baseline):
                continue
            for _, size in sorted(k for k in groups if k[0] == cand):
                if (ref, size) in groups:
                    out.append(("vs " + ref, (cand, size), (ref, size)))
    return out


def _load(record: dict) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = runs.load_scores(record["run_dir"], "test")
    return scores, labels


def _source(record: dict) -> str:
    return str(Path(record["data_root"]).expanduser().resolve())


def _pair(group_a: list[dict], group_b: list[dict], loaded: dict[str, tuple[np.ndarray, np.ndarray]],
          names: tuple[str, str], n_boot: int, seed: int) -> dict[str, Any]:
    """seed_group_difference of two groups after checking that every run scored the same images."""
    first = group_a[0]
    labels = loaded[first["run_dir"]][1]
    for r in group_a[1:] + group_b:
        metrics.check_same_images(labels, loaded[r["run_dir"]][1], _source(first), _source(r),
                                  names=(f"{names[0]} seed {first['seed']}", f"seed {r['seed']} of its comparison"))
    return metrics.seed_group_difference(labels, [loaded[r["run_dir"]][0] for r in group_a],
                                         [loaded[r["run_dir"]][0] for r in group_b], n_boot=n_boot, seed=seed,
                                         class_names=D.CLASS_NAMES[:labels.shape[1]], method=METHOD)


def differences(records: list[dict], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every comparison of `comparisons` as a row: delta, 95% CI, p and a plain verdict (or why it is missing).

    `records` are core.study.records' run records with their "candidate" set.
    """
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["candidate"], r["size"]), []).append(r)
    several = len({c for c, _ in groups}) > 1
    loaded = {r["run_dir"]: _load(r) for r in records}
    rows = []
    for kind, a, b in comparisons(groups):
        name_a, name_b = group_name(*a, several), group_name(*b, several)
        row: dict[str, Any] = {"kind": kind, "a": name_a, "b": name_b, "candidate_a": a[0], "size_a": a[1],
                               "candidate_b": b[0], "size_b": b[1], "n_runs_a": len(groups[a]),
                               "n_runs_b": len(groups[b])}
        try:
            res = _pair(groups[a], groups[b], loaded, (name_a, name_b), n_boot, seed)
        except metrics.PairingError as e:
            rows.append(row | {"paired": False, "verdict": f"not compared: {e}"})
            continue
        rows.append(row | {
            "paired": True, "delta": res["delta"], "ci_low": res["ci"][0], "ci_high": res["ci"][1],
            "p_value": res["p_value"], "auc_a": res["auc_a"], "auc_b": res["auc_b"],
            "n_images": res["n_images"], "n_boot_used": res["n_boot_used"],
            "verdict": metrics.verdict(res, name_a, name_b),
            "per_class": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in c.items()}
                          for c in res["per_class"]]})
    return {"method": METHOD, "method_text": ("seeds combined by mean AUC: a group's AUC is the mean of its runs' "
                                              "test AUCs, on the full test set and on every resample"),
            "n_boot": n_boot, "seed": seed, "baseline": BASELINE, "rows": rows}
