"""report.md: the study's summary as Markdown, with the plain observations its numbers support."""
from __future__ import annotations

import time

import pandas as pd

from core.study.resolution import markdown as resolution_markdown
from core.study.common import FIGURES, FRONTIER_FIGURE
from core.study.frontier import gflop_text
from core.study.sequential import markdown as sequential_markdown
from core.study.tables import format_tables, markdown_table, multi_seed, per_class_table, row_label, several_candidates


def observations(summary: dict) -> list[str]:
    """Plain statements the numbers support (chance level, overlapping intervals), for report.md and the app."""
    out = []
    sizes = [r for r in summary["sizes"] if r.get("test_auc") is not None]
    single = [r for r in sizes if r["n_seeds"] == 1 and r.get("test_auc_ci_low") is not None]
    chance = [r["size"] for r in single if r["test_auc_ci_low"] <= 0.5 <= r["test_auc_ci_high"]]
    if chance:
        out.append(f"Test AUC at {', '.join(map(str, chance))} px is not distinguishable from chance (0.5): "
                   "its 95% CI contains 0.5.")
    if len(single) > 1 and len(single) == len(sizes):
        lo = max(r["test_auc_ci_low"] for r in single)
        hi = min(r["test_auc_ci_high"] for r in single)
        if lo <= hi:
            # Overlapping separate intervals neither separate the sizes nor show them equal; the paired
            # Differences (with non-inferiority) are what answers it.
            out.append("The test AUC intervals of all sizes overlap; that alone neither ranks the sizes nor shows "
                       "them equal: read the paired Differences, and non-inferiority, below.")
    if sizes:
        out.append(_headline(summary, sizes))
    return out


def _headline(summary: dict, sizes: list[dict]) -> str:
    """The highest test AUC, said only as far as the primary family's (Holm-adjusted) verdicts support it: a
    point estimate that is not distinguishable from the others is no winner."""
    best = max(sizes, key=lambda r: r["test_auc"])
    cheapest = min(sizes, key=lambda r: r["gflops"])
    b, c = row_label(summary, best), row_label(summary, cheapest)
    primary = [r for r in (summary.get("differences") or {}).get("rows", []) if r.get("family") == "primary"]
    alpha = 1 - summary.get("ci_level", 0.95)
    decided = [r for r in primary if r.get("paired") and r.get("p_adjusted") is not None and r["p_adjusted"] < alpha]
    if primary and not decided:
        return (f"No size is distinguishable from {primary[0]['b']} after correction (the primary family, below), so "
                f"no size wins: the highest point estimate, {b} ({best['test_auc']:.3f}), is not evidence of a "
                f"better size, and whether the cheapest, {c}, is good enough is the non-inferiority column's answer.")
    if b == c:
        return f"Highest test AUC: {b} ({best['test_auc']:.3f}), also the cheapest."
    return (f"Highest test AUC: {b} ({best['test_auc']:.3f}) at {best['gflops'] / cheapest['gflops']:.1f}x the FLOPs "
            f"per image of {c} ({cheapest['test_auc']:.3f}); the paired Differences say which gaps are real.")


def markdown(summary: dict) -> str:
    """report.md for a study summary (summary.json)."""
    return "\n".join(_intro(summary) + sequential_markdown(summary.get("sequential") or {})
                     + _data_and_machine(summary) + _results(summary)
                     + resolution_markdown(summary.get("resolution") or {}) + _frontier(summary.get("frontier"))
                     + _figures_and_runs(summary))


def _frontier(grid: dict | None) -> list[str]:
    """Images or pixels (core.study.frontier): the grid's cells against training compute, and the answer at
    equal compute."""
    if not grid:
        return []
    rows = [{"cell": c["label"], "seeds": len(c["seeds"]),
             "test AUC (mean ± sd)": f"{c['auc']:.4f}" + (f" ± {c['auc_sd']:.4f}" if c["auc_sd"] is not None else ""),
             "training GFLOP": gflop_text(c["train_gflop"]),
             "measured s": "n/a" if c["seconds"] is None else f"{c['seconds']:,.1f}",
             "on the frontier (GFLOP / s)": f"{'yes' if c['front_gflop'] else 'no'} / "
                                             f"{'yes' if c['front_seconds'] else 'no'}"} for c in grid["cells"]]
    answer = [f"- {s}" for s in grid["sentences"]] or [
        f"- No two cells trade images for pixels within {grid['tolerance']:g}x of each other's training GFLOP: "
        "no equal-compute comparison."]
    return ["## Images or pixels", "",
            "Every size trained on fractions of the training split (for a seed, the same images at every size, a "
            "smaller subset inside a larger). Test AUC is medmnist's mean per-class ROC AUC on the test set, the "
            f"mean over seeds. Compute: {grid['convention']}; {grid['seconds_text']}. On the frontier: no other cell "
            "has no more compute and no lower test AUC.", "", markdown_table(pd.DataFrame(rows)), "",
            "At equal compute, more images at fewer pixels against more pixels on fewer images (cells whose training "
            f"GFLOP lie within {grid['tolerance']:g}x of each other), paired on the same test images and seed-aware; "
            "the pairs are one family, the verdict on its "
            f"{'Holm' if grid['correction'] == 'holm' else 'Benjamini-Hochberg'}-adjusted p (the 95% CI is "
            "unadjusted):", "", *answer, "",
            f"![Test AUC against training compute]({FRONTIER_FIGURE})", ""]



def _intro(summary: dict) -> list[str]:
    """Title, data warning, what was run and the recipe."""
    data = summary["data"]
    recipe = summary["recipe"]
    sizes = [r["size"] for r in summary["sizes"]]
    L: list[str] = []
    L += [f"# Resolution study `{summary['name']}`", ""]
    if not data["official"]:
        L += [f"> **Data: {data['label']}.** These numbers describe this data only; do not quote them as "
              f"ChestMNIST results. {data['verdict']}", ""]
    L += [f"{len(summary['runs'])} runs: sizes {', '.join(map(str, sizes))} px, seed(s) "
          f"{', '.join(map(str, summary['seeds']))}; generated {time.strftime('%Y-%m-%d %H:%M', time.localtime(summary['created']))}"
          + (f" by `{' '.join(summary['command'])}`." if summary.get("command") else "."), ""]
    knobs = ", ".join(f"{k} {recipe.get(k)}" for k in ("model", "epochs", "batch_size", "lr", "weight_decay", "schedule", "pos_weight_clip",
                                                      "threshold", "select_by", "patience", "subset", "augment"))
    L += ["**Recipe** (the same for every size" + (", of the most common candidate" if several_candidates(summary)
                                                     else "") + f"): {knobs}.", ""]
    if several_candidates(summary):
        L += ["**Candidates** (model, plus the settings in which it differs from that recipe): "
              + "; ".join(f"`{c}`" for c in summary["candidates"]) + ".", ""]
    return L


def _data_and_machine(summary: dict) -> list[str]:
    """Which data files and which machines."""
    data = summary["data"]
    machine = summary["machine"]
    L: list[str] = []
    L += ["## Data", ""]
    for root in data["roots"]:
        L += [f"- data root `{root}`" + (f" - its README: *{data['readme_title']}*" if data["readme_title"] else "")]
    L += ["", "| size | file | MD5 | train | val | test | source |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in data["files"]:
        n = f["n"]
        L.append(f"| {f['size']} px | `{f['file']}` | `{f['md5']}` | {n['train']:,} | {n['val']:,} | {n['test']:,} | "
                 f"{f['verdict']} |")
    L += [""]

    b = machine["report_built_on"]
    L += ["## Machine", ""]
    for t in machine["trained_on"]:
        L.append(f"- trained on: {t['platform']}, {t['cpus']} CPUs, device `{t['device']}`, torch {t['torch']}")
    if machine["train_devices"]:
        L.append(f"- training processes reported: {', '.join(machine['train_devices'])}")
    L.append(f"- report built on: {b['platform']}, {b['cpus']} CPUs ({b['cpu_model'] or 'CPU model unknown'}), "
             f"GPUs: {b['gpus'] or 'none'}, torch {b['torch']} ({b['torch_threads']} threads)")
    L += [""]
    return L


def _results(summary: dict) -> list[str]:
    """Validation, test and cost tables with how each was measured."""
    recipe = summary["recipe"]
    tables = format_tables(summary)
    multi = multi_seed(summary)
    L: list[str] = []
    L += ["## Table 1: validation at the best epoch", "",
          "The epoch whose checkpoint was kept (best " + str(recipe.get("select_by")) + "), from each run's metrics per epoch. "
          "F1 at the study's global threshold " + str(recipe.get("threshold")) + "."
          + (" Mean ± std over seeds." if multi else ""), "",
          markdown_table(tables["Table 1: validation at the best epoch"]), ""]
    L += ["## Test", "",
          "From each run's test metrics (best checkpoint): medmnist AUC (mean of the per-class AUCs that are "
          "defined) and ACC (all labels at score > 0.5), "
          + ("mean ± std over seeds (per-seed 95% bootstrap CIs are in runs.csv)" if multi else
             f"with {int(100 * summary['ci_level'])}% percentile bootstrap CIs ({summary['n_boot']} resamples of "
             "the test images; ACC on the same resamples)")
          + ". Macro-F1 uses per-class thresholds chosen on validation (Youden's J).", "",
          markdown_table(tables["Test"]), ""]
    L += _differences(summary, tables)
    L += ["## Calibration and operating points", "",
          "From each run's test metrics: expected calibration error (10 equal-width bins; pooled over the pairs of "
          "every defined class, and the mean of the per-class ECEs), Brier score, and the mean over defined classes "
          "of the sensitivity at 90% and 95% specificity (read off the test ROC curve, as AUC is; not thresholds "
          "chosen in advance). " + ("Mean ± std over seeds. " if multi else "")
          + "Training with pos_weight pushes the probabilities of rare findings up, so ECE measures that choice too.", "",
          markdown_table(tables["Calibration and operating points"]), "",
          "Per class, with the test positives each number rests on" + (" (mean over seeds):" if multi else ":"), "",
          markdown_table(per_class_table(summary)), ""]
    inf = summary.get("inference") or {}
    L += ["## Cost", "", markdown_table(tables["Cost"]), "",
          "- params and GFLOPs/image: from the run config (core.models.flops_per_image: convolutions and linear layers, "
          "forward pass, a multiply-add = 2 FLOPs).",
          "- s/epoch: median wall time of an epoch including validation; train img/s: median training throughput "
          "(the run's metrics per epoch, core.runs.summary). Both were measured while training, on the device named, and depend on whatever else "
          "the machine was doing.",
          (f"- inference ms/image: core.evaluate.predict on the first {inf.get('images')} test images in batches of "
           f"{inf.get('batch')}, on `{inf.get('device')}` ({inf.get('threads')} CPU threads, fp32 as evaluation scores), median of 3 timed passes "
           "after a warm-up; best model of the first seed of each size." if inf else
           "- inference ms/image: not measured."),
          "- peak RSS: maximum resident set size of the training process (kernel rusage of the child process the "
          "study trains each run in; under torchrun, the largest rank). It includes the Python/torch runtime and the "
          "dataset arrays held in memory (dataset MB; from 128 px images are read from disk by batch and only the batch counts), "
          "so it is not the model's memory alone. "
          + ("Peak GPU MB: torch.cuda.max_memory_allocated of rank 0. " if any(r.get("cuda_peak_mb") for r in summary["sizes"]) else "")
          + "Sizes whose runs were trained outside the study's child process show n/a.",
          ""]
    for r in summary["sizes"]:
        if "not measured" in r["memory_note"]:
            L.append(f"  - {row_label(summary, r)}: {r['memory_note']}.")
    return L


def _differences(summary: dict, tables: dict) -> list[str]:
    """The paired differences between sizes (and candidates), with how seeds were combined."""
    diff = summary.get("differences") or {}
    if not diff.get("rows"):
        return []
    families = "; ".join(f"**{name}**: {text}" for name, text in (diff.get("families") or {}).items())
    return ["## Differences", "",
            f"Paired test-AUC differences a - b on the same test images. Seed handling: `{diff['method']}`, "
            f"{diff['method_text']}. The image part of the variance comes from {diff['n_boot']} bootstrap resamples "
            "of the images (the same resample for every run). Comparisons belong to declared families "
            f"({families}); p is adjusted within each family ({diff.get('correction_text', 'Holm')}), and a verdict "
            "rests on the adjusted p. Non-inferiority (primary family): the smaller size is non-inferior when the "
            f"one-sided 95% lower bound of its difference lies above -{diff.get('margin', 0.01):g} AUC (p adjusted "
            f"over the family too). Classes with fewer than {diff.get('min_positives', 5)} test positives (or "
            "negatives) are left out of the compared mean, as listed. Groups are paired only when all their runs "
            "scored the same images (same data folder, same test labels).", "",
            markdown_table(tables["Differences"]), ""]


def _figures_and_runs(summary: dict) -> list[str]:
    """Figures, observations, the runs and notes."""
    multi = multi_seed(summary)
    L: list[str] = []
    L += ["## Figures", "",
          f"![Training curves]({FIGURES['curves']})", "",
          "Validation AUC, train loss and validation loss per epoch for each size; the star marks the kept checkpoint.", "",
          f"![Test AUC against cost]({FIGURES['auc_vs_cost']})", "",
          "Test AUC against forward GFLOPs per image and against measured seconds per epoch; error bars are "
          + ("± 1 std over seeds." if multi else f"the {int(100 * summary['ci_level'])}% bootstrap CI."), "",
          f"![Per-class test AUC]({FIGURES['per_class_auc']})", "",
          "Per-class test AUC across sizes."]
    undefined = sorted({(u["name"], u["reason"]) for r in summary["sizes"] for u in r["auc_undefined_classes"]})
    if undefined:
        L[-1] += (" Blank cells: AUC is undefined because the test split has "
                  + "; ".join(f"{why} for {n}" for n, why in undefined) + "; the mean AUC averages the other classes.")
    L += [""]
    reading = observations(summary)
    if reading:
        L += ["## Reading this", ""] + [f"- {o}" for o in reading] + [""]
    L += ["## Runs", "", "| candidate | size | seed | run folder | state | epochs | best epoch |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary["runs"]:
        L.append(f"| {r.get('candidate', r['model'])} | {r['size']} px | {r['seed']} | `{r['run_dir']}` | {r['state']} | {r['epochs_done']}/{r['epochs']} "
                 f"| {r['best_epoch']} |")
    L += [""]
    if summary["failed_runs"] or summary["notes"]:
        L += ["## Notes", ""]
        L += [f"- FAILED, not in the tables: `{p}` (see its status in the run folder)" for p in summary["failed_runs"]]
        L += [f"- {n}" for n in summary["notes"]]
        L += [""]
    L += ["Every number above is in summary.json; tables as CSV: runs.csv (one row per run), table1_val.csv, test.csv, "
          "calibration.csv, differences.csv, "
          "cost.csv, per_class_test_auc.csv.", ""]
    return L
