"""Collecting the records: every number the report shows about each run (from its files), and per size."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from core import metrics
from core.runs import record as runs
from core.runs.summary import summary_of_rows
from core.study.common import COST_KEYS, TEST_KEYS, VAL_KEYS
from core.study.recipe import recipe_settings


def readme_title(root: str | Path) -> str | None:
    path = Path(root) / "README.md"
    try:
        for line in path.read_text(errors="replace").splitlines()[:20]:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    except OSError:
        pass
    return None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def run_record(run_dir: Path) -> dict:
    """Every number the report shows about one finished run, from its files (and the study's cost log)."""
    config = runs.read_config(run_dir)
    tc = config["train"]
    rows = runs.read_metrics(run_dir)
    if not rows:
        raise runs.RunError(f"{run_dir} has no epochs recorded; it never finished an epoch.")
    test = runs.read_test_metrics(run_dir)
    trained = summary_of_rows(rows)
    best = trained.best_row
    scores, labels = runs.load_scores(run_dir, "test")
    acc_lo, acc_hi = metrics.medmnist_acc_ci(labels, scores, n_boot=int(test.get("n_boot") or 1000))
    auc_ci = test.get("auc_ci") or [None, None]
    sessions = runs.read_cost_sessions(run_dir)
    isolated = [s for s in sessions if s.get("isolated") and s.get("peak_rss_mb") is not None]
    rss = max((s["peak_rss_mb"] for s in isolated), default=None)
    cuda = max((s["cuda_peak_mb"] for s in sessions if s.get("cuda_peak_mb") is not None), default=None)
    if isolated:
        memory_note = f"peak RSS of the training process, max over {len(isolated)} session(s)"
    elif sessions:
        memory_note = "trained inside the study process: peak memory not measured per size"
    else:
        memory_note = "trained outside this study's runner: peak memory not measured"
    n = config["data"]["n"]
    size = tc["size"]
    return {
        "size": size, "seed": tc["seed"], "run_id": run_dir.name, "run_dir": str(run_dir.resolve()),
        "state": runs.read_status(run_dir).get("state"), "model": tc["model"],
        "epochs": tc["epochs"], "epochs_done": trained.epochs_done, "best_epoch": trained.best_epoch,
        **{k: best.get(k) for k in VAL_KEYS},
        "test_auc": test.get("auc"), "test_auc_ci_low": auc_ci[0], "test_auc_ci_high": auc_ci[1],
        "test_acc": test.get("acc"), "test_acc_ci_low": acc_lo, "test_acc_ci_high": acc_hi,
        "test_macro_f1": test.get("macro_f1"), "test_n": test.get("n_samples"),
        "ci_level": test.get("ci_level", 0.95), "n_boot": test.get("n_boot"),
        "test_auc_per_class": {c: v.get("auc") for c, v in (test.get("per_class") or {}).items()},
        "test_positives": {c: v.get("support") for c, v in (test.get("per_class") or {}).items()},
        **calibration_fields(test),
        "auc_undefined_classes": test.get("auc_undefined_classes") or [],
        "params": config["model"]["params"], "flops_per_image": config["model"]["flops_per_image"],
        "gflops": config["model"]["flops_per_image"] / 1e9,
        # Wall time of the whole epoch (training + validation) and training throughput, per epoch row.
        "seconds_per_epoch": trained.seconds_per_epoch,
        "train_images_per_s": trained.train_images_per_s,
        "peak_rss_mb": rss, "cuda_peak_mb": cuda, "memory_note": memory_note,
        "world_size": max((s.get("world_size") or 1 for s in sessions), default=1),
        "device": config["machine"]["device"], "train_devices": sorted({s["device"] for s in sessions if s.get("device")}),
        "machine": config["machine"], "versions": config.get("versions", {}),
        "data_root": tc["data_root"], "data_file": config["data"]["file"], "data_md5": config["data"]["md5"],
        "data_n": n, "data_mb": sum(n.values()) * size * size / 2**20, "subset": tc.get("subset"),
        "curves": {k: [r.get(k) for r in rows] for k in ("epoch", "val_auc", "train_loss", "val_loss", "train_auc")},
        "train_config": tc,
    }


OPERATING_KEYS = ("sens_at_spec90", "sens_at_spec95")
CALIBRATION_KEYS = ("test_ece", "test_ece_macro", "test_brier", "test_sens_at_spec90", "test_sens_at_spec95")


def calibration_fields(test: dict) -> dict:
    """Calibration (pooled ECE, macro ECE, Brier) and the mean sensitivity at 90%/95% specificity over
    the classes whose AUC is defined, plus those per class, from a run's test metrics (core.runs.summary)."""
    per_class = test.get("per_class") or {}
    out = {"test_ece": test.get("ece"), "test_ece_macro": test.get("ece_macro"), "test_brier": test.get("brier"),
           "test_per_class_ops": {c: {k: v.get(k) for k in ("ece", "brier", *OPERATING_KEYS)}
                                  for c, v in per_class.items()}}
    for key in OPERATING_KEYS:
        values = [v.get(key) for v in per_class.values() if v.get("auc") is not None and v.get(key) is not None]
        out[f"test_{key}"] = float(np.mean(values)) if values else None
    return out


def label_candidates(records: list[dict]) -> None:
    """Set each record's "candidate": its model, plus the recipe settings in which it differs from the
    most common recipe of the runs (e.g. "res-cnn batch_size=128"), so runs group by candidate and size."""
    recipes = [recipe_settings(r["train_config"]) for r in records]
    keys = [json.dumps(x, sort_keys=True, default=str) for x in recipes]
    # Of equally common recipes the one on the whole training split is the reference, so a --subsets grid's
    # subset runs read "subset=253", not its full-data runs "subset=None".
    reference = recipes[keys.index(max(keys, key=lambda k: (keys.count(k), not recipes[keys.index(k)].get("subset"))))]
    for r, recipe in zip(records, recipes):
        diff = [f"{k}={v}" for k, v in recipe.items() if k != "model" and v != reference.get(k)]
        r["candidate"] = " ".join([recipe.get("model", "?"), *diff])


def mean_std(values: list) -> tuple[float | None, float | None]:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def size_rows(records: list[dict]) -> list[dict]:
    """One row per candidate and size (records labelled by label_candidates): means and sd over its seeds."""
    out = []
    for cand, size in sorted({(r["candidate"], r["size"]) for r in records}, key=lambda k: (_order(records, k[0]), k[1])):
        rs = [r for r in records if r["size"] == size and r["candidate"] == cand]
        row: dict[str, Any] = {"candidate": cand, "size": size, "seeds": [r["seed"] for r in rs], "n_seeds": len(rs),
                               "best_epoch": [r["best_epoch"] for r in rs], "epochs_done": [r["epochs_done"] for r in rs]}
        for key in (*VAL_KEYS, *TEST_KEYS, *CALIBRATION_KEYS, *COST_KEYS):
            mean, std = mean_std([r.get(key) for r in rs])
            row[key], row[f"{key}_std"] = mean, std
        if len(rs) == 1:  # one seed: its bootstrap intervals are the uncertainty shown
            for key in ("test_auc_ci_low", "test_auc_ci_high", "test_acc_ci_low", "test_acc_ci_high"):
                row[key] = rs[0][key]
        classes = list(rs[0]["test_auc_per_class"])
        row["test_auc_per_class"] = {c: mean_std([r["test_auc_per_class"].get(c) for r in rs])[0] for c in classes}
        row["auc_undefined_classes"] = rs[0]["auc_undefined_classes"]
        row["test_positives"] = rs[0]["test_positives"]
        row["test_per_class_ops"] = {c: {k: mean_std([r["test_per_class_ops"][c].get(k) for r in rs])[0]
                                         for k in ("ece", "brier", *OPERATING_KEYS)} for c in classes}
        row["device"] = ", ".join(sorted({r["device"] for r in rs}))
        row["world_size"] = max(r["world_size"] for r in rs)
        row["memory_note"] = "; ".join(sorted({r["memory_note"] for r in rs}))
        out.append(row)
    return out


def _order(records: list[dict], candidate: str) -> int:
    """Candidates in the order their first run was given."""
    return next(i for i, r in enumerate(records) if r["candidate"] == candidate)
