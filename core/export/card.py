"""A model card for an exported run, built only from what the run folder holds: its config (recipe and
data file), its test metrics and test scores, its saved thresholds and training rows, plus the cost
measured at export. As JSON (`build_card`) and as Markdown (`card_markdown`).
"""
from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any

from core.data.chestmnist import CLASS_NAMES, SPLITS
from core.data.provenance import data_provenance
from core.export.onnx_model import input_spec
from core.metrics.bootstrap import medmnist_acc_ci
from core.predict.scoring import thresholds_source
from core.runs import record as runs
from core.runs.summary import run_summary

INTENDED_USE = ("Research and teaching: how the resolution of a chest X-ray classifier trades against its accuracy "
                "and compute. Probabilities for the 14 ChestMNIST findings from one grayscale image.")
NOT_FOR = ("NOT FOR CLINICAL USE. Not a medical device, not validated on any patients, and not to be used to "
           "diagnose, triage or treat anyone. Scores on images unlike its training data (other scanners, sites, "
           "views) are untested.")


def _num(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _test(run_dir: Path) -> dict:
    """Test metrics of the card: medmnist AUC and ACC with 95% bootstrap CIs, calibration, per class."""
    test = runs.read_test_metrics(run_dir)
    scores, labels = runs.load_scores(run_dir, "test")
    acc_ci = medmnist_acc_ci(labels, scores, n_boot=int(test.get("n_boot") or 1000))
    per_class = {name: {"auc": _num(m.get("auc")), "auc_ci": [_num(m.get("auc_ci_low")), _num(m.get("auc_ci_high"))],
                        "positives": int(m.get("support") or 0), "ece": _num(m.get("ece")),
                        "brier": _num(m.get("brier"))}
                 for name, m in (test.get("per_class") or {}).items()}
    return {"images": int(test.get("n_samples") or len(labels)), "auc_medmnist": _num(test.get("auc")),
            "auc_ci": [_num(x) for x in (test.get("auc_ci") or [None, None])], "acc_medmnist": _num(test.get("acc")),
            "acc_ci": [_num(x) for x in acc_ci], "ci_level": test.get("ci_level", 0.95),
            "calibration": {"ece": _num(test.get("ece")), "ece_macro": _num(test.get("ece_macro")),
                            "brier": _num(test.get("brier"))},
            "per_class": per_class, "data_file": test.get("data_file")}


def build_card(run_dir: str | Path, cost: dict) -> dict:
    """The card as a JSON-able dict: model, data provenance, recipe, training, test metrics, thresholds,
    `cost` (params, FLOPs, latencies as measured by the caller), intended use. RunError or
    ThresholdFileError when the run is not evaluated."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    train, data = config["train"], config.get("data") or {}
    n = {s: data.get("n", {}).get(s) for s in SPLITS}
    choice, split, source = thresholds_source(run_dir)
    summary = run_summary(run_dir)
    return {
        "model": {"run": run_dir.name, "architecture": train["model"], "input_px": train["size"],
                  "classes": list(CLASS_NAMES)},
        "data": {**data_provenance(train["size"], n, data.get("md5")), "file": data.get("file"),
                 "md5": data.get("md5"), "split_counts": n, "size_px": train["size"]},
        "recipe": train,
        "training": {"epochs_done": summary.epochs_done, "best_epoch": summary.best_epoch,
                     "val_auc_at_best_epoch": _num(summary.best_row.get("val_auc"))},
        "test": _test(run_dir),
        "thresholds": {"source": source, "method": choice.method, "tuned_on": split,
                       "fallback_classes": [CLASS_NAMES[c] for c in choice.fallback],
                       "per_class": dict(zip(CLASS_NAMES, map(float, choice.thresholds)))},
        "input": input_spec(train["size"]),
        "cost": {**cost, "machine": f"{platform.machine()} {platform.processor() or ''}".strip()},
        "intended_use": INTENDED_USE,
        "not_for": NOT_FOR,
    }


def _f(v: float | None, digits: int = 3) -> str:
    return "undefined" if v is None else f"{v:.{digits}f}"


def _ci(pair: list) -> str:
    return "undefined" if None in pair else f"{pair[0]:.3f}–{pair[1]:.3f}"


def card_markdown(card: dict) -> str:
    """The card as Markdown, every figure from `card`."""
    m, d, t, thr, cost = card["model"], card["data"], card["test"], card["thresholds"], card["cost"]
    n = d["split_counts"]
    lines = [f"# Model card: {m['architecture']} at {m['input_px']} px (run {m['run']})", "",
             f"**{card['not_for']}**", "", "## Intended use", "", card["intended_use"], "",
             "## Data", "", f"- {d['verdict']}",
             f"- file `{d['file']}`, MD5 `{d['md5']}`, {d['size_px']} px",
             "- images: " + ", ".join(f"{s} {n[s]:,}" if n[s] is not None else f"{s} ?" for s in n), "",
             "## Recipe", "", "| setting | value |", "|---|---|",
             *[f"| {k} | {v} |" for k, v in card["recipe"].items()], "",
             f"Trained {card['training']['epochs_done']} epochs; the kept checkpoint is epoch "
             f"{card['training']['best_epoch']} (best val AUC {_f(card['training']['val_auc_at_best_epoch'], 4)}).", "",
             f"## Test ({t['images']:,} images, {round(100 * t['ci_level'])}% bootstrap CIs)", "",
             f"- AUC (medmnist): {_f(t['auc_medmnist'], 4)} [{_ci(t['auc_ci'])}]",
             f"- ACC (medmnist, 0.5): {_f(t['acc_medmnist'], 4)} [{_ci(t['acc_ci'])}]",
             f"- calibration: ECE {_f(t['calibration']['ece'])} (pooled), Brier {_f(t['calibration']['brier'])}", "",
             "| finding | AUC | 95% CI | test positives | threshold |", "|---|---|---|---|---|",
             *[f"| {c} | {_f(v['auc'])} | {_ci(v['auc_ci'])} | {v['positives']} | {thr['per_class'][c]:.3f} |"
               for c, v in t["per_class"].items()], "",
             "A finding whose CI reaches 0.5 is not distinguishable from chance on this test split.", "",
             "## Thresholds", "", f"Decision: probability >= threshold; thresholds {thr['source']}."
             + (f" Fallback 0.5 (no positives or negatives where tuned): {', '.join(thr['fallback_classes'])}."
                if thr["fallback_classes"] else ""), "",
             "## Cost", "", f"- parameters {cost['params']:,}; forward {cost['flops'] / 1e6:,.1f} MFLOP per image",
             f"- measured on {cost['machine']} ({cost['threads']} threads, batches of {cost['batch']}): "
             f"onnxruntime {cost['onnx_ms_per_image']:.3f} ms/image, torch {cost['torch_ms_per_image']:.3f} ms/image",
             "", "## Input", "", *[f"- {k}: {v}" for k, v in card["input"].items()], ""]
    return "\n".join(lines)
