"""The Compare page's data: runs read from their folders, seed groups, paired differences, tables.

Not a page (app.py lists the pages): plain functions over core, cached where they read files or
resample. A seed group is the runs that share a recipe (core.runs.groups.recipe_key: every training
setting but size, seed, name and how it executes) and a size; its differences, families and verdicts
are core.study.comparisons', as in the study report.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.runs import record as runs
from core.runs import folder as runs_folder
from core.runs import groups as G
from core.study import comparisons as C
from core.study.recipe import study_of
from core.runs.summary import summary_of_rows
from ui.common import file_mtime

# (key in a metrics row after "train_"/"val_", label). Per-epoch F1 uses the run's fixed threshold.
EPOCH_METRICS = (("loss", "loss"), ("auc", "AUC (medmnist)"), ("acc", "ACC (medmnist, 0.5)"),
                 ("macro_f1", "macro F1 (fixed threshold)"), ("micro_f1", "micro F1 (fixed threshold)"))
N_BOOT = 2000  # paired resamples, as core.metrics' default and the study report


def num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def load_run(r: runs_folder.RunInfo) -> dict:
    """Everything the page shows about one run, from its files; `error` set when something is unreadable."""
    out = {"info": r, "rows": runs.read_metrics(r.path), "config": {}, "test": None, "error": None}
    try:
        out["config"] = runs.read_config(r.path)
    except runs.RunError as e:
        out["error"] = str(e)
    if runs.has_test_metrics(r.path):
        try:
            out["test"] = runs.read_test_metrics(r.path)
        except runs.RunError as e:
            out["error"] = str(e)
    return out


def run_order(run: dict) -> tuple[int, int, str]:
    """Size, then seed, then run id: the order the legends and lists read in (the selection's put seed 10
    before seed 5). A seed that is not a whole number (an untrusted config) sorts first."""
    seed = (run["config"].get("train") or {}).get("seed")
    return run["info"].size or 0, seed if isinstance(seed, int) and not isinstance(seed, bool) else -1, run["info"].id


def selection_keys(run_dir) -> set[str]:
    """What the default selection matches against the most recent run, each as JSON: the run's recipe (what its
    seed group shares with its size) and, for a study's run, its study with its recipe bar the training subset
    (an images-or-pixels grid is one study of one recipe at several subsets); none if unreadable."""
    try:
        config = runs.read_config(run_dir)
    except runs.RunError:
        return set()
    train = config.get("train")
    if not train:
        return set()
    keys = {G.recipe_key(train)}
    if (study := study_of(train.get("name"))) is not None:
        keys.add(json.dumps([study, G.recipe_key({k: v for k, v in train.items() if k != "subset"})]))
    return keys


@dataclass
class Group:
    """Runs sharing a recipe and a size (seeds of one recipe)."""

    name: str
    size: int | None
    model: str | None
    recipe: str  # the recipe as sorted JSON: groups of one family share it
    runs: list[dict] = field(default_factory=list)
    counted: set[str] = field(default_factory=set)  # ids of the runs its numbers use: each seed once
    notes: list[str] = field(default_factory=list)  # which run of a repeated seed is used (core.runs.groups)


def _recipe_key(run: dict) -> str:
    train = run["config"].get("train")
    # an unreadable config is a group of its own
    return G.recipe_key(train) if train else json.dumps({"run": run["info"].id})


def _recipe_tags(keys: list[str]) -> dict[str, str]:
    """Per recipe, the settings that tell it from the other recipes of its model (`lr=0.001, epochs=15`)."""
    parsed = {k: json.loads(k) for k in keys}
    tags = {}
    for k, settings in parsed.items():
        others = [o for o in parsed.values() if o is not settings and o.get("model") == settings.get("model")]
        differs = [name for name in sorted(settings) if any(o.get(name) != settings[name] for o in others)]
        tags[k] = ", ".join(f"{name}={settings[name]}" for name in differs if name != "data_root")
        if "data_root" in differs:
            tags[k] = ", ".join(filter(None, [tags[k], f"data {settings['data_root']}"]))
    return tags


def seed_groups(loaded: list[dict]) -> list[Group]:
    """Groups by (recipe, size), ordered by size then name; names say size, model and, where one model has
    several recipes, the settings that differ."""
    by_key: dict[tuple[str, int | None], Group] = {}
    for run in loaded:
        key = (_recipe_key(run), run["info"].size)
        if key not in by_key:
            by_key[key] = Group("", run["info"].size, run["info"].model, key[0])
        by_key[key].runs.append(run)
    keys = sorted({g.recipe for g in by_key.values()})
    tags = _recipe_tags(keys)
    for g in by_key.values():
        tag = tags[g.recipe]
        g.name = f"{g.size} px · {g.model}" + (f" · {tag}" if tag else "")
        _count_seeds_once(g)
    return sorted(by_key.values(), key=lambda g: (g.size or 0, g.name))


def _count_seeds_once(g: Group) -> None:
    """Set the group's counted runs and notes by core.runs.groups.seed_groups, the study report's dedupe:
    a repeated seed (a sweep and a study run of one recipe, a copy) is its most recent run."""
    configs = {str(run["info"].path): run["config"].get("train") for run in g.runs}
    counted = {path for path, train in configs.items() if not train}  # an unreadable config counts as itself
    for sg in G.seed_groups({path: train for path, train in configs.items() if train}):
        counted.update(sg.runs)
        g.notes += G.repeat_notes(sg, g.name)
    g.counted = {run["info"].id for run in g.runs if str(run["info"].path) in counted}


def counted_ids(groups: list[Group]) -> set[str]:
    """The run ids the groups' numbers use (each seed of a group once)."""
    return set().union(*(g.counted for g in groups))


def series_names(groups: list[Group]) -> dict[str, str]:
    """Full legend name per run id: its group's name, plus the run's display name (core.runs.annotations) or, where
    the group has several runs, its seed, plus the id where that repeats too (copies, two runs of one name)."""
    out = {}
    for g in groups:
        tags = [run["info"].display_name or (f"seed {(run['config'].get('train') or {}).get('seed')}"
                                             if len(g.runs) > 1 else "") for run in g.runs]
        for run, tag in zip(g.runs, tags):
            name = g.name + (f" · {tag}" if tag else "")
            out[run["info"].id] = name + (f" · {run['info'].id}" if tag and tags.count(tag) > 1 else "")
    return out


def short_names(groups: list[Group]) -> dict[str, str]:
    """A label per run id short enough for a column per run (the full one: series_names): its size, and its seed
    where its group has several runs (`28 px · s3`); a running number where two runs would read alike."""
    out: dict[str, str] = {}
    for g in groups:
        for run in g.runs:
            seed = (run["config"].get("train") or {}).get("seed")
            out[run["info"].id] = f"{g.size} px" + (f" · s{seed}" if len(g.runs) > 1 else "")
    labels = list(out.values())
    return {rid: label if labels.count(label) == 1 else f"{label} · #{i + 1}" for i, (rid, label) in enumerate(out.items())}


def smooth(values: pd.Series, weight: float) -> pd.Series:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0."""
    if weight <= 0:
        return values
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last, norm = weight * last + (1 - weight) * v, weight * norm + (1 - weight)
        out.append(last / norm)
    return pd.Series(out, index=values.index)


# The curves' x axes: (column of epoch_frame, title). Steps and time are summed from each epoch's row (its
# training images and seconds); the log holds no timestamps, so time is training time, pauses left out.
X_AXES = {"epoch": ("epoch", "epoch"), "step": ("step", "step (batches trained)"),
          "wall time": ("minutes", "training time (minutes, training + validation)")}


def _run_axes(run: dict) -> list[dict]:
    """Per metrics row of a run: its step and training minutes so far, whether its checkpoint is the kept (best)
    one, and whether training resumed at that epoch (the trainer marks the first row after a resume)."""
    batch = (run["config"].get("train") or {}).get("batch_size")
    best_epoch = summary_of_rows(run["rows"]).best_epoch
    step = minutes = 0.0
    out = []
    for row in run["rows"]:
        images, seconds = num(row.get("images")), num(row.get("seconds"))
        step = step + np.ceil(images / batch) if images is not None and isinstance(batch, int) and batch > 0 else np.nan
        minutes = minutes + seconds / 60 if seconds is not None else np.nan
        out.append({"step": step, "minutes": minutes, "best": row["epoch"] == best_epoch,
                    "resumed": row.get("resumed") is True})
    return out


def epoch_frame(loaded: list[dict], names: dict[str, str], groups: list[Group], weight: float = 0.0) -> pd.DataFrame:
    """One row per (run, epoch, split, metric): `raw` as logged, `value` smoothed with `weight`, and the x axes
    and markers of _run_axes."""
    group_of = {run["info"].id: g.name for g in groups for run in g.runs}
    recs = []
    for run in loaded:
        r = run["info"]
        for row, axes in zip(run["rows"], _run_axes(run)):
            for split in ("train", "val"):
                for key, label in EPOCH_METRICS:
                    value = num(row.get(f"{split}_{key}"))
                    if value is not None:
                        recs.append({"run": r.id, "series": names[r.id], "group": group_of[r.id], "size": r.size,
                                     "epoch": row["epoch"], "split": split, "metric": label, "raw": value, **axes})
    df = pd.DataFrame(recs, columns=["run", "series", "group", "size", "epoch", "split", "metric", "raw", "step",
                                     "minutes", "best", "resumed"])
    df = df.sort_values(["run", "split", "metric", "epoch"], kind="stable")
    df["value"] = df.groupby(["run", "split", "metric"])["raw"].transform(lambda s: smooth(s, weight)) \
        if len(df) else pd.Series(dtype=float)
    return df.reset_index(drop=True)


def recipe_fields(loaded: list[dict]) -> list[str]:
    """The training settings (size and seed included) whose values differ among the runs: what the curves can be
    grouped or coloured by."""
    trains = [run["config"].get("train") or {} for run in loaded]
    names = sorted({k for t in trains for k in t} - {"data_root", "runs_dir", "name"})
    return [k for k in names if len({json.dumps(t.get(k), sort_keys=True, default=str) for t in trains}) > 1]


def field_labels(loaded: list[dict], fields: list[str]) -> dict[str, str]:
    """Per run id, its values of `fields` ("size=64 · lr=0.001"): a group or colour of the curves."""
    return {run["info"].id: " · ".join(f"{k}={(run['config'].get('train') or {}).get(k)}" for k in fields)
            for run in loaded}


def band_frame(epochs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over each group's runs per (epoch, split, metric): the seed bands (sd 0 for one run), with the
    mean of the logged values (`raw`) beside the smoothed `mean`."""
    if not len(epochs):
        return pd.DataFrame(columns=["group", "epoch", "split", "metric", "mean", "raw", "sd", "runs", "lo", "hi"])
    out = epochs.groupby(["group", "epoch", "split", "metric"], as_index=False).agg(
        mean=("value", "mean"), raw=("raw", "mean"),
        sd=("value", lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else 0.0), runs=("run", "nunique"))
    out["lo"], out["hi"] = out["mean"] - out["sd"], out["mean"] + out["sd"]
    return out


def summary_frame(loaded: list[dict], names: dict[str, str], groups: list[Group]) -> pd.DataFrame:
    """One row per run: validation, test and compute numbers from its files (inference time is added later)."""
    group_of = {run["info"].id: g.name for g in groups for run in g.runs}
    out = []
    for run in loaded:
        r, rows, cfg, test = run["info"], run["rows"], run["config"], run["test"] or {}
        trained = summary_of_rows(rows)
        scored = [row for row in rows if num(row.get("val_auc")) is not None]
        best = max(scored, key=lambda row: row["val_auc"]) if scored else {}
        ci = test.get("auc_ci") or [None, None]
        model = cfg.get("model", {})
        flops = model.get("flops_per_image")
        out.append({
            "run": names[r.id], "run id": r.id, "group": group_of[r.id], "seed": (cfg.get("train") or {}).get("seed"),
            "size (px)": r.size, "model": r.model, "epochs done": len(rows),
            "best val AUC (medmnist)": best.get("val_auc"), "best val AUC epoch": best.get("epoch"),
            "val loss at that epoch": best.get("val_loss"),
            "tested checkpoint epoch": trained.best_epoch,
            "test AUC (medmnist)": test.get("auc"), "test AUC 95% CI low": ci[0], "test AUC 95% CI high": ci[1],
            "test ACC (medmnist, 0.5)": test.get("acc"),
            "test macro F1 (val-tuned thresholds)": test.get("macro_f1"),
            "test micro F1 (val-tuned thresholds)": test.get("micro_f1"),
            "test exact-match accuracy (val-tuned thresholds)": test.get("exact_match_accuracy"),
            "test ECE (pooled)": test.get("ece"), "test Brier": test.get("brier"),
            "parameters": model.get("params"), "GFLOPs per image": flops / 1e9 if flops else None,
            "seconds per epoch (median)": trained.seconds_per_epoch,
            "training images/s (median)": trained.train_images_per_s,
        })
    return pd.DataFrame(out)


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    """Mean and sd (NaN for fewer than two values) of the values present; NaN, NaN when none is."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return np.nan, np.nan
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else np.nan)


def group_frame(summary: pd.DataFrame, groups: list[Group]) -> pd.DataFrame:
    """One row per seed group: runs, seeds, mean and sd over seeds of test and best val AUC, cost."""
    out = []
    for g in groups:
        rows = summary[(summary["group"] == g.name) & summary["run id"].isin(g.counted)]
        test_mean, test_sd = _mean_sd(rows["test AUC (medmnist)"])
        val_mean, val_sd = _mean_sd(rows["best val AUC (medmnist)"])
        out.append({"group": g.name, "size (px)": g.size, "model": g.model, "runs": len(rows),
                    "seeds": seed_ranges(list(rows["seed"].dropna().astype(int))),
                    "test AUC mean": test_mean, "test AUC sd": test_sd, "tested runs": int(rows["test AUC (medmnist)"].notna().sum()),
                    "best val AUC mean": val_mean, "best val AUC sd": val_sd,
                    "GFLOPs per image": _mean_sd(rows["GFLOPs per image"])[0],
                    "seconds per epoch (mean)": _mean_sd(rows["seconds per epoch (median)"])[0]})
    return pd.DataFrame(out)


@st.cache_data(max_entries=64, show_spinner=False)
def _cached_difference(dirs_a: tuple[str, ...], dirs_b: tuple[str, ...], mtimes: tuple[float, ...], n_boot: int,
                       seed: int, min_positives: int) -> dict:
    """core.runs.groups.group_difference; `mtimes` (of the score files) key the cache."""
    return G.group_difference(dirs_a, dirs_b, n_boot=n_boot, seed=seed, min_positives=min_positives)


def _difference(runs_a: list[str], runs_b: list[str], n_boot: int, seed: int, min_positives: int) -> dict:
    mtimes = tuple(file_mtime(runs.scores_path(d, "test")) for d in runs_a + runs_b)
    return _cached_difference(tuple(runs_a), tuple(runs_b), mtimes, n_boot, seed, min_positives)


def _loads_scores(run_dir: Path) -> bool:
    """Whether the run's test scores load: a damaged file leaves that run out of the paired answer, not the page down.
    Asked of every counted run on every rerun (a slider moved), so answered once per version of the file."""
    return runs.has_scores(run_dir, "test") and _scores_load(str(run_dir), file_mtime(runs.scores_path(run_dir, "test")))


@st.cache_data(max_entries=512, show_spinner=False)
def _scores_load(run_dir: str, mtime: float) -> bool:
    try:
        runs.load_scores(run_dir, "test")
    except runs.RunError:
        return False
    return True


DIFF_COLUMNS = ["family", "comparison", "runs", "delta", "CI low", "CI high", "p", "p adjusted", "verdict",
                "non-inferiority", "seeds needed", "left out", "Δ AUC [95% CI]", "decision"]


def _decision(row: dict) -> str:
    """The verdict in a few words (core.metrics.winner's side); the sentence with its numbers is `verdict`."""
    if not row["paired"]:
        return "not paired"
    side = row.get("winner")
    said = {1: f"{row['a']} better", -1: f"{row['b']} better", 0: "not distinguishable"}.get(side, "no classes to compare")
    return said + (" (these runs only)" if row.get("scope") == "runs" else "")


def _delta_text(row: dict) -> str | None:
    delta, lo, hi = (num(row.get(k)) for k in ("delta", "ci_low", "ci_high"))
    return None if None in (delta, lo, hi) else f"{delta:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def differences_frame(groups: list[Group], margin: float = C.DEFAULT_MARGIN, correction: str = "holm",
                      equivalence: bool = False) -> pd.DataFrame:
    """The resolution answer (core.study.comparisons, as the study report): within each recipe, every size against
    the largest (the primary family, with non-inferiority at `margin`) and adjacent sizes (exploratory), p adjusted
    within each family by `correction` (and equivalence within ±margin when asked); a seed group's runs are the
    runs it counts (each seed once: its most recent run, as its notes say) that have test scores."""
    members: dict[tuple[str, int], list[str]] = {}
    label: dict[tuple[str, int], str] = {}
    for g in groups:
        tested = [str(r["info"].path) for r in g.runs if r["info"].id in g.counted and _loads_scores(r["info"].path)]
        if g.size and tested:
            members[(g.recipe, g.size)] = tested
            label[(g.recipe, g.size)] = g.name
    several = len({r for r, _ in members}) > 1
    names = {k: label[k] if several else f"{k[1]} px" for k in members}
    rows = C.compare(C.resolution_plan(list(members)), members, names, n_boot=N_BOOT, correction=correction,
                     margin=margin, equivalence=equivalence, difference=_difference)
    return pd.DataFrame([{
        "family": r["family"], "comparison": f"{r['a']} vs {r['b']}", "runs": f"{r['n_runs_a']} vs {r['n_runs_b']}",
        "delta": r.get("delta"), "CI low": r.get("ci_low"), "CI high": r.get("ci_high"), "p": r.get("p_value"),
        "p adjusted": r.get("p_adjusted"), "verdict": r["verdict"] if r["paired"] else r["verdict"].replace(
            "not compared: ", "not paired: "), "non-inferiority": r.get("noninferiority"),
        "seeds needed": r.get("seeds_needed"), "left out": "; ".join(r.get("classes_excluded") or []),
        "Δ AUC [95% CI]": _delta_text(r), "decision": _decision(r)}
        for r in rows], columns=DIFF_COLUMNS)


def seed_ranges(seeds: list[int]) -> str:
    """Seeds as runs of consecutive numbers ("0–16, 20"): a sweep's 17 seeds in a narrow column."""
    spans: list[list[int]] = []
    for s in sorted(seeds):
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    return ", ".join(str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}–{b}" for a, b in spans)
