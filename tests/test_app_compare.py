"""pages/compare.py through streamlit's AppTest, against the numbers in real run folders."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from core.data import chestmnist as D
from core.runs import record as runs
from core.study import build_report


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def table_with(at, column: str):
    return next(df for df in at.dataframe if column in df.value.columns)


def summary(at):
    """The two summary tables (validation/test scores, compute cost) joined on the run id."""
    scores = table_with(at, "test AUC [95% CI]").value.set_index("run id")
    cost = table_with(at, "parameters").value.set_index("run id")
    return scores.join(cost.drop(columns=["run", "details"]))


def shown_columns(df) -> list[str]:
    """Labels of the columns a summary table displays (its hidden run id left out)."""
    config = json.loads(df.proto.columns)
    return [c["label"] for name, c in config.items() if not c.get("hidden")]


def panels(spec) -> list[dict]:
    """The overlay chart's panels, row by row: [[panel, ...], ...]."""
    return [row["hconcat"] for row in spec["vconcat"]]


def line_encoding(unit) -> dict:
    """Encoding of the line layer of one panel (line + its points)."""
    (line,) = [lay for lay in unit["layer"] if (lay["mark"]["type"] if isinstance(lay["mark"], dict)
                                                  else lay["mark"]) == "line"]
    return line["encoding"]


def test_no_runs_is_guidance_not_an_error(open_page, data_root, tmp_path):
    (tmp_path / "runs").mkdir()
    at = open_page("compare.py", data_root, tmp_path / "runs").run()
    assert not at.exception and not at.error
    assert any("has finished an epoch" in i for i in texts(at.info))


def test_a_mistyped_runs_folder_is_said_not_to_exist(open_page, data_root, tmp_path):
    at = open_page("compare.py", data_root, tmp_path / "checkpoitns").run()
    assert not at.exception and not at.info  # not "No run in checkpoitns has finished an epoch yet"
    (error,) = texts(at.error)
    assert error.startswith(f"The runs folder {tmp_path / 'checkpoitns'} does not exist.")


def chart_by(at, test) -> tuple[dict, "pd.DataFrame"]:  # noqa: F821
    """(spec, every dataset concatenated) of the first altair chart whose spec satisfies `test`."""
    import pandas as pd

    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        if test(spec):
            # Layers over one frame share its rows (the hover readout adds a pivot key): count each row once.
            frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas().drop(columns=["key"], errors="ignore")
                      for d in element.proto.datasets]
            return spec, pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)
    raise AssertionError("no such chart")


def is_curves(spec) -> bool:
    return "vconcat" in spec and ("hconcat" in spec["vconcat"][0] or "facet" in spec["vconcat"][0])


def is_tradeoff(spec) -> bool:
    return "layer" in spec and any(lay.get("mark", {}).get("shape") == "diamond" for lay in spec["layer"]
                                   if isinstance(lay.get("mark"), dict))


def is_heat(spec) -> bool:
    return "layer" in spec and any((lay.get("mark") == "rect" or lay.get("mark", {}) == {"type": "rect"}
                                    or (isinstance(lay.get("mark"), dict) and lay["mark"].get("type") == "rect"))
                                   for lay in spec["layer"])


def is_reliability(spec) -> bool:
    return "layer" in spec and any(lay.get("encoding", {}).get("y", {}).get("field") == "frac_pos"
                                   for lay in spec["layer"])


def test_default_selection_and_one_colour_per_run(open_page, data_root, finished_runs):
    runs_dir = finished_runs[28].parent
    at = open_page("compare.py", data_root, runs_dir).run()
    assert not at.exception and not at.error
    assert sorted(at.multiselect(key="compare_runs").value) == sorted(p.name for p in finished_runs.values())
    assert len(at.get("vega_lite_chart")) == 4  # AUC vs compute, curves, reliability, per-class heat table

    spec, df = chart_by(at, is_curves)
    # Five metric panels in rows of three and two: no empty cell with a stray axis.
    assert [[p["title"] for p in row] for row in panels(spec)] == [
        ["loss", "AUC (medmnist)", "ACC (medmnist, 0.5)"], ["macro F1 (fixed threshold)", "micro F1 (fixed threshold)"]]
    enc = line_encoding(panels(spec)[0][0])
    assert enc["color"]["field"] == "series"
    names = ["28 px · res-cnn", "64 px · res-cnn"]  # one run per group: no seed in the name
    assert enc["color"]["scale"]["domain"] == names
    assert {t["field"] for t in enc["tooltip"]} >= {"run", "series", "epoch", "value", "raw"}
    # The split legend shows line samples, so its solid/dashed key is visible (not two identical dots).
    assert enc["strokeDash"]["field"] == "split" and enc["strokeDash"]["legend"]["symbolType"] == "stroke"
    assert enc["y"]["scale"]["type"] == "log"  # loss on a log axis (the default)
    df = df.dropna(subset=["metric"])
    assert sorted(df["series"].unique()) == names
    assert set(df["metric"]) == {"loss", "AUC (medmnist)", "ACC (medmnist, 0.5)", "macro F1 (fixed threshold)",
                                 "micro F1 (fixed threshold)"}
    assert set(df["split"]) == {"train", "val"}
    for size, run_dir in finished_runs.items():  # the plotted values are the logged ones (no smoothing by default)
        rows = runs.read_metrics(run_dir)
        mine = df[(df["run"] == run_dir.name) & (df["split"] == "val") & (df["metric"] == "AUC (medmnist)")]
        np.testing.assert_allclose(mine.sort_values("epoch")["value"], [r["val_auc"] for r in rows])
        assert set(mine["size"]) == {size}

    # The data note: generated data is not ChestMNIST, in one short line; which runs used which data in an expander.
    (warning,) = texts(at.warning)
    assert warning.startswith("Not ChestMNIST: All selected runs") and len(warning) < 100, warning
    assert not any(p.name in warning for p in finished_runs.values()), warning
    (details,) = [e for e in at.expander if e.label == "Which runs, which data"]
    listed = " ".join(m.value for m in details.markdown)
    assert all(p.name in listed for p in finished_runs.values()) and str(data_root) in listed, listed


def hover_rules(spec) -> list[dict]:
    return [lay for row in panels(spec) for p in row for lay in p["layer"]
            if (lay["mark"]["type"] if isinstance(lay["mark"], dict) else lay["mark"]) == "rule"]


def test_hover_readout_lists_every_run_with_its_full_name(open_page, data_root, runs_copy):
    # The 64 px run ended an epoch earlier: its last metrics row goes.
    rows = runs.read_metrics(runs_copy[64])
    runs.truncate_metrics(runs_copy[64], len(rows) - 1)
    at = open_page("compare.py", data_root, runs_copy[28].parent).run()
    at.slider(key="compare_smooth").set_value(0.5).run()
    spec, _ = chart_by(at, is_curves)
    rules = hover_rules(spec)
    assert len(rules) == 5  # one per panel, each with its own nearest-epoch selection
    for rule in rules:
        assert rule["encoding"]["tooltip"]["field"] == "tip"
        tips = {row["epoch"]: row["tip"] for row in rule["data"]["values"]}
        assert all(isinstance(tip["epoch"], int) for tip in tips.values())  # "epoch 3" in the readout, not "3.0"
        assert list(tips[1]) == ["epoch", "28 px · res-cnn (val)", "28 px · res-cnn (train)", "64 px · res-cnn (val)",
                                 "64 px · res-cnn (train)"], tips[1]
        # The run that ended earlier has no key at its missing epoch (where a pivoted field read NaN); every value
        # reads logged and smoothed.
        assert list(tips[max(tips)]) == ["epoch", "28 px · res-cnn (val)", "28 px · res-cnn (train)"], tips
        assert all(re.fullmatch(r"-?\d+\.\d{4} logged, -?\d+\.\d{4} smoothed", v)
                   for tip in tips.values() for k, v in tip.items() if k != "epoch"), tips
    params = [p["name"] for p in spec.get("params", [])] or [p["name"] for r in rules for p in r.get("params", [])]
    assert len(set(params)) == 5


def test_smoothing_is_tensorboards_and_keeps_the_logged_value(open_page, data_root, finished_runs):
    at = open_page("compare.py", data_root, finished_runs[28].parent).run()
    at.slider(key="compare_smooth").set_value(0.5).run()
    assert not at.exception
    _, df = chart_by(at, is_curves)
    run_dir = finished_runs[28]
    rows = runs.read_metrics(run_dir)
    mine = df[(df["run"] == run_dir.name) & (df["split"] == "val") & (df["metric"] == "AUC (medmnist)")]
    mine = mine.sort_values("epoch")
    a, b = (r["val_auc"] for r in rows)
    np.testing.assert_allclose(mine["raw"], [a, b])
    # Debiased EMA: the first point is the logged one, the second (0.25 a + 0.5 b) / 0.75.
    np.testing.assert_allclose(mine["value"], [a, (0.25 * a + 0.5 * b) / 0.75])
    assert at.get("download_button")  # CSV exports are offered


def test_small_multiples_toggle(open_page, data_root, finished_runs):
    at = open_page("compare.py", data_root, finished_runs[28].parent).run()
    at.toggle(key="compare_overlay").set_value(False).run()
    spec, df = chart_by(at, is_curves)
    assert len(spec["vconcat"]) == 5  # one row per metric
    for row in spec["vconcat"]:
        assert row["facet"]["column"]["field"] == "series"  # one column per run
        assert line_encoding(row["spec"])["color"]["field"] == "series"


def test_summary_equals_the_run_files(open_page, data_root, finished_runs):
    at = open_page("compare.py", data_root, finished_runs[28].parent).run()
    table = summary(at)
    for size, run_dir in finished_runs.items():
        row = table.loc[run_dir.name]
        test = json.loads((run_dir / "test_metrics.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        rows = runs.read_metrics(run_dir)
        best = max(rows, key=lambda r: r["val_auc"])
        assert row["size (px)"] == size and row["epochs done"] == len(rows) == 2
        assert row["best val AUC (medmnist)"] == pytest.approx(best["val_auc"])
        assert row["best val AUC epoch"] == best["epoch"]
        assert row["tested checkpoint epoch"] == rows[-1]["best_epoch"]
        assert row["test AUC [95% CI]"] == "{:.3f} [{:.3f}, {:.3f}]".format(test["auc"], *test["auc_ci"])
        assert row["test ACC (medmnist, 0.5)"] == pytest.approx(test["acc"])
        assert row["test macro F1 (val-tuned thresholds)"] == pytest.approx(test["macro_f1"])
        assert row["test micro F1 (val-tuned thresholds)"] == pytest.approx(test["micro_f1"])
        assert row["test exact-match accuracy (val-tuned thresholds)"] == pytest.approx(test["exact_match_accuracy"])
        assert row["parameters"] == config["model"]["params"]
        assert row["GFLOPs per image"] == pytest.approx(config["model"]["flops_per_image"] / 1e9)
        assert row["seconds per epoch (median)"] == pytest.approx(np.median([r["seconds"] for r in rows]))
        assert row["training images/s (median)"] == pytest.approx(np.median([r["images_per_s"] for r in rows]))
        assert row["inference ms per image (CPU, 64 test images)"] > 0
    # Two tables with short labels (full names in each header's help), so each fits a 1400 px window.
    assert shown_columns(table_with(at, "test AUC [95% CI]")) == [
        "run", "epochs", "best val AUC", "epoch", "tested", "test AUC [95% CI]", "test ACC", "macro F1",
        "micro F1", "exact", "details"]
    assert shown_columns(table_with(at, "parameters")) == [
        "run", "size (px)", "model", "parameters", "GFLOPs/image", "s/epoch", "train img/s", "inference ms/image",
        "details"]

    # AUC against compute: one point per run, coloured by group, CI bars from test_metrics.json.
    spec, df = chart_by(at, is_tradeoff)
    points = spec["layer"][1]["encoding"]
    assert points["color"]["field"] == "group" and points["x"]["scale"]["type"] == "log"
    df = df[df["kind"] == "run"].set_index("run id")
    for run_dir in finished_runs.values():
        test = json.loads((run_dir / "test_metrics.json").read_text())
        assert (df.loc[run_dir.name, "auc"], df.loc[run_dir.name, "lo"], df.loc[run_dir.name, "hi"]) == \
            pytest.approx((test["auc"], *test["auc_ci"]))


def test_heat_table_has_every_class_and_undefined_cells(open_page, data_root, runs_copy):
    # Hernia with no test positives, as core.metrics writes it: auc null and listed as undefined.
    path = runs_copy[64] / "test_metrics.json"
    test = json.loads(path.read_text())
    test["per_class"]["hernia"].update(auc=None, auc_ci_low=None, auc_ci_high=None)
    test["auc_undefined_classes"] = [{"name": "hernia", "reason": "no positives"}]
    path.write_text(json.dumps(test))

    at = open_page("compare.py", data_root, runs_copy[28].parent).run()
    assert not at.exception
    spec, df = chart_by(at, is_heat)
    assert len(df) == D.N_CLASSES * 2 and set(df["class"]) == set(D.CLASS_NAMES)
    assert spec["layer"][0]["encoding"]["color"]["field"] == "auc"
    for size, run_dir in runs_copy.items():
        per_class = json.loads((run_dir / "test_metrics.json").read_text())["per_class"]
        mine = df[df["run id"] == run_dir.name].set_index("class")
        for c in D.CLASS_NAMES:
            auc, lo, hi = (per_class[c][k] for k in ("auc", "auc_ci_low", "auc_ci_high"))
            if auc is None:
                assert np.isnan(mine.loc[c, "auc"]) and mine.loc[c, "label"] == "—"
                assert mine.loc[c, "test AUC"] == "undefined (no positives)"
            else:
                assert mine.loc[c, "auc"] == pytest.approx(auc)
                assert mine.loc[c, "test AUC"] == f"{auc:.3f} (95% CI {lo:.3f}–{hi:.3f})"
    assert (df["test AUC"] == "undefined (no positives)").sum() == 1
    # Classes down the side, runs across under short level labels (full names in the tooltip); the AUC is
    # written only in cells wide enough for it.
    enc = spec["layer"][0]["encoding"]
    assert enc["y"]["field"] == "class" and enc["x"]["field"] == "short" and enc["x"]["axis"]["labelAngle"] == 0
    assert {t.get("title") for t in enc["tooltip"]} >= {"run"} and set(df["short"]) == {"28 px", "64 px"}
    text = [lay for lay in spec["layer"] if lay["mark"] == "text" or lay["mark"].get("type") == "text"][0]
    assert "bandwidth('x')" in text["encoding"]["opacity"]["condition"]["test"]


def test_short_run_labels_are_unique_at_20_runs():
    from types import SimpleNamespace

    from ui import compare_data as CD

    def run(rid: str, seed: int) -> dict:
        return {"info": SimpleNamespace(id=rid), "config": {"train": {"seed": seed}}}
    groups = [CD.Group("28 px · res-cnn", 28, "res-cnn", "a", [run(f"a{s}", s) for s in range(17)]),
              CD.Group("28 px · res-cnn · lr=0.01", 28, "res-cnn", "b", [run("b0", 0)]),
              CD.Group("28 px · res-cnn · lr=0.1", 28, "res-cnn", "c", [run("c0", 0)]),
              CD.Group("64 px · res-cnn", 64, "res-cnn", "d", [run("d0", 0)])]
    short = CD.short_names(groups)
    assert short["a3"] == "28 px · s3" and short["d0"] == "64 px"
    assert short["b0"] != short["c0"] and len(set(short.values())) == len(short) == 20, short
    assert max(len(v) for v in short.values()) <= 12, short


def _second_seed(run_dir, auc_shift: float):
    """A copy of `run_dir` as seed 1 of its recipe, its logged val AUC and test AUC moved by `auc_shift`."""
    twin = run_dir.parent / (run_dir.name + "-seed1")
    shutil.copytree(run_dir, twin)
    config = json.loads((twin / "config.json").read_text())
    config["train"]["seed"] = 1
    runs.write_json(twin / "config.json", config)
    rows = [dict(r, val_auc=r["val_auc"] + auc_shift) for r in runs.read_metrics(twin)]
    (twin / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test = json.loads((twin / "test_metrics.json").read_text())
    runs.write_json(twin / "test_metrics.json", dict(test, auc=test["auc"] + auc_shift))
    return twin


def test_seeds_form_groups_with_mean_and_sd(open_page, data_root, runs_copy):
    twin = _second_seed(runs_copy[28], -0.1)
    at = open_page("compare.py", data_root, twin.parent).run()
    assert not at.exception and not at.error
    # Seeds are first-class: the default selection brings the best run's other seeds along.
    assert sorted(at.multiselect(key="compare_runs").value) == sorted([runs_copy[28].name, twin.name,
                                                                       runs_copy[64].name])
    aucs = [json.loads((d / "test_metrics.json").read_text())["auc"] for d in (runs_copy[28], twin)]

    groups = table_with(at, "seeds").value.set_index("group")
    assert list(groups.index) == ["28 px · res-cnn", "64 px · res-cnn"]
    row = groups.loc["28 px · res-cnn"]
    assert row["runs"] == 2 and row["seeds"] == "0, 1"
    assert row["test AUC mean"] == pytest.approx(np.mean(aucs))
    assert row["test AUC sd"] == f"{np.std(aucs, ddof=1):.3f}"
    assert groups.loc["64 px · res-cnn", "runs"] == 1 and groups.loc["64 px · res-cnn", "test AUC sd"] == "—"

    # Curves: one line per group (mean over seeds) with a ±sd band, on by default when a group has seeds.
    assert at.toggle(key="compare_bands").value
    spec, df = chart_by(at, is_curves)
    first = panels(spec)[0][1]  # the AUC panel
    assert line_encoding(first)["color"]["scale"]["domain"] == list(groups.index)
    (band,) = [lay for lay in first["layer"] if (lay["mark"]["type"] if isinstance(lay["mark"], dict)
                                                 else lay["mark"]) == "area"]
    assert band["encoding"]["y"]["field"] == "lo" and band["encoding"]["y2"]["field"] == "hi"
    val = [[r["val_auc"] for r in runs.read_metrics(d)] for d in (runs_copy[28], twin)]
    mine = df[(df["series"] == "28 px · res-cnn") & (df["split"] == "val") & (df["metric"] == "AUC (medmnist)")]
    mine = mine.dropna(subset=["mean"]).drop_duplicates(subset=["epoch"]).sort_values("epoch")
    np.testing.assert_allclose(mine["mean"], np.mean(val, axis=0))
    np.testing.assert_allclose(mine["hi"] - mine["lo"], 2 * np.std(val, axis=0, ddof=1))

    # AUC against cost: the group's diamond at mean ± sd over its seeds.
    _, points = chart_by(at, is_tradeoff)
    g = points[(points["kind"] == "group") & (points["group"] == "28 px · res-cnn")].iloc[0]
    assert (g["auc"], g["hi"] - g["lo"]) == pytest.approx((np.mean(aucs), 2 * np.std(aucs, ddof=1)))

    # Off: one distinct colour per run, named in full (seed where a group has several).
    at.toggle(key="compare_bands").set_value(False).run()
    spec, df = chart_by(at, is_curves)
    domain = line_encoding(panels(spec)[0][0])["color"]["scale"]["domain"]
    assert domain == ["28 px · res-cnn · seed 0", "28 px · res-cnn · seed 1", "64 px · res-cnn"]
    assert df.groupby("series")["run"].nunique().to_dict() == {name: 1 for name in domain}


def test_paired_differences_between_sizes_answer_first(open_page, data_root, finished_runs):
    from core import metrics as M

    at = open_page("compare.py", data_root, finished_runs[28].parent).run()
    assert at.header[0].value == "Does resolution matter here?"
    table = table_with(at, "decision")
    (row,) = table.value.to_dict("records")
    (s28, labels), (s64, labels64) = (runs.load_scores(finished_runs[s], "test") for s in (28, 64))
    want = M.paired_auc_difference(labels, s28, s64, n_boot=2000, class_names=D.CLASS_NAMES)
    # Short columns so the table fits a 1400 px window; what each number is, in each header's help.
    assert shown_columns(table) == ["comparison", "family", "runs", "Δ AUC [95% CI]", "p (Holm)", "decision"]
    assert row["comparison"] == "28 px vs 64 px" and row["family"] == "primary"
    assert row["Δ AUC [95% CI]"] == "{:+.3f} [{:+.3f}, {:+.3f}]".format(want["delta"], *want["ci"])
    assert row["p adjusted"] == pytest.approx(want["p_value"])  # a family of one
    side = {1: "28 px better", -1: "64 px better", 0: "not distinguishable"}[M.winner(want)]
    assert row["decision"] == side + " (these runs only)"
    # The sentences and the raw p, under the table.
    (details,) = [e for e in at.expander if e.label.startswith("Each comparison in full")]
    (text,) = texts(details.markdown)
    assert text.startswith(f"**28 px vs 64 px** (primary): {M.verdict(want, '28 px', '64 px')}.")
    assert f"p {want['p_value']:.2g} raw, {want['p_value']:.2g} Holm-adjusted" in text
    ni = M.noninferiority(want, "28 px", "64 px", margin=0.01)  # a family of one: adjusted p = raw p
    sentence = M.noninferiority_text("28 px", "64 px", 0.01, ni["lower"], ni["upper"], ni["p_noninferior"] < 0.05,
                                     None, "runs", note=f", Holm-adjusted one-sided p {ni['p_noninferior']:.2g}")
    assert f"{sentence[0].upper()}{sentence[1:]}." in text
    excluded = "; ".join(f"{e['class']} ({e['reason']})" for e in want["excluded"])
    assert (f"Left out of the mean: {excluded}." in text) == bool(excluded)


def test_runs_scored_on_other_images_are_not_paired(open_page, data_root, runs_copy):
    scores, labels = runs.load_scores(runs_copy[64], "test")
    labels[0, 0] = 1 - labels[0, 0]
    runs.save_scores(runs_copy[64], "test", scores, labels)
    at = open_page("compare.py", data_root, runs_copy[28].parent).run()
    assert not at.exception
    (row,) = table_with(at, "decision").value.to_dict("records")
    assert row["decision"] == "not paired" and row["Δ AUC [95% CI]"] is None
    (details,) = [e for e in at.expander if e.label.startswith("Each comparison in full")]
    (text,) = texts(details.markdown)
    assert "(primary): not paired: " in text and "different test labels on 1 of 96 images" in text


def test_calibration_per_class_with_positives(open_page, data_root, finished_runs):
    from core import metrics as M

    at = open_page("compare.py", data_root, finished_runs[28].parent).run()
    run_dir = finished_runs[28]
    scores, labels = runs.load_scores(run_dir, "test")
    cal = M.calibration(labels, scores)
    _, rel = chart_by(at, is_reliability)
    mine = rel[rel["run id"] == run_dir.name].dropna(subset=["count"])
    pooled = cal["pooled"]
    kept = pooled["count"] > 0
    np.testing.assert_allclose(mine["count"], pooled["count"][kept])
    np.testing.assert_allclose(mine["frac_pos"], pooled["frac_pos"][kept])
    at.selectbox(key="compare_calibration_class").set_value(D.CLASS_NAMES[2]).run()
    _, rel = chart_by(at, is_reliability)
    mine = rel[rel["run id"] == run_dir.name].dropna(subset=["count"])
    assert mine["count"].sum() == len(labels)  # one class: every test image once

    test = json.loads((run_dir / "test_metrics.json").read_text())
    at.selectbox(key="compare_calibration_run").set_value("28 px · res-cnn").run()
    classes = table_with(at, "sensitivity at 90% specificity").value.set_index("class")
    assert list(classes.columns[:2]) == ["test positives", "test AUC"]
    for c in D.CLASS_NAMES:
        pc = test["per_class"][c]
        assert classes.loc[c, "test positives"] == pc["support"] == int(labels[:, D.CLASS_NAMES.index(c)].sum())
        assert classes.loc[c, "ECE"] == pytest.approx(pc["ece"], nan_ok=True)
        assert classes.loc[c, "sensitivity at 95% specificity"] == pytest.approx(pc["sens_at_spec95"], nan_ok=True)
    runs_table = table_with(at, "ECE (pooled)").value.set_index("run")
    assert runs_table.loc["28 px · res-cnn", "Brier"] == pytest.approx(test["brier"])


def test_every_table_links_to_the_run_page(open_page, data_root, finished_runs):
    at = open_page("compare.py", data_root, finished_runs[28].parent).run()
    for column in ("test AUC [95% CI]", "parameters"):
        table = table_with(at, column).value.set_index("run id")
        for run_dir in finished_runs.values():
            assert table.loc[run_dir.name, "details"] == f"run?run={run_dir.name}"


def test_official_data_is_not_flagged_and_unevaluated_runs_are_noted(open_page, data_root, runs_copy):
    official, stopped = runs_copy[28], runs_copy[64]
    config = json.loads((official / "config.json").read_text())
    config["data"]["md5"] = D.download_url(28)[1]  # as if prepared on the official chestmnist.npz
    runs.write_json(official / "config.json", config)
    (stopped / "test_metrics.json").unlink()
    runs.set_status(stopped, "stopped", error="Stopped by request; resume to continue.")

    at = open_page("compare.py", data_root, official.parent).run()
    assert not at.exception
    (warning,) = texts(at.warning)
    assert warning.startswith("Not ChestMNIST: 1 of the 2 selected runs"), warning
    (details,) = [e for e in at.expander if e.label == "Which runs, which data"]
    listed = " ".join(m.value for m in details.markdown)
    assert stopped.name in listed and official.name not in listed, listed
    table = summary(at)
    assert pd.isna(table.loc[stopped.name, "test AUC [95% CI]"])
    assert any("Not evaluated on test yet" in c and "64 px" in c for c in texts(at.caption))
    _, heat = chart_by(at, is_heat)
    assert set(heat["run id"]) == {official.name}


def test_compare_and_the_study_report_summarise_a_run_alike(open_page, data_root, runs_copy, tmp_path):
    """One summary of a run: Compare's s/epoch and tested epoch are the study report's."""
    run_dir = runs_copy[28]
    rows = runs.read_metrics(run_dir)
    # Unequal epoch times, so a mean and a median differ, and a kept checkpoint that is not the last epoch.
    rows = [dict(r, seconds=s, is_best=r["epoch"] == 1, best_epoch=1) for r, s in zip(rows, (1.0, 9.0))]
    rows.append(dict(rows[-1], epoch=3, seconds=2.0))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_report([run_dir], tmp_path / "report", measure_inference_time=False)
    (record,) = report.summary["runs"]
    row = summary(open_page("compare.py", data_root, run_dir.parent).run()).loc[run_dir.name]
    assert record["seconds_per_epoch"] == row["seconds per epoch (median)"] == 2.0
    assert record["best_epoch"] == row["tested checkpoint epoch"] == 1


def test_which_pixels_matter_scores_on_request_then_draws_the_curve_and_the_gap(open_page, data_root, runs_copy):
    """The effective-resolution curve of the 64 px run beside the 28 px run of its recipe (issue #22): nothing is
    scored until asked, then the chart, the gap sentence and the per-finding chart come from the run folders."""
    from core.evaluate import effective as EF

    at = open_page("compare.py", data_root, runs_copy[28].parent, timeout=180).run()
    assert not at.exception
    assert at.selectbox(key="compare_effective_group").value.size == 64
    assert at.button(key="compare_effective_go")  # not scored yet: a button, no chart
    at.button(key="compare_effective_go").click().run()
    assert not at.exception and not at.error
    cached = EF.effective_scores(runs_copy[64], (16, 20, 28, 40, 56), cached_only=True)
    assert {("resampled", r) for r in (16, 20, 28, 40, 56)} <= set(cached)  # kept in the run folder
    said = " ".join(m.value for m in at.markdown)
    assert "**28 px.**" in said and any(w in said for w in ("No cost of", "Information", "Limited by", "relies on detail"))
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert any("effective" in json.dumps(s) or "image size seen by the model" in json.dumps(s) for s in specs)
    assert any("change in test AUC" in json.dumps(s) for s in specs)


def _clone(run_dir, folder: str, auc_shift: float = 0.0, **train):
    """A copy of `run_dir` in `folder` (a run id: it orders runs in time) with other train settings."""
    twin = run_dir.parent / folder
    shutil.copytree(run_dir, twin)
    config = json.loads((twin / "config.json").read_text())
    config["train"].update(train)
    runs.write_json(twin / "config.json", config)
    rows = [dict(r, val_auc=r["val_auc"] + auc_shift) for r in runs.read_metrics(twin)]
    (twin / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return twin


def test_default_selection_is_the_most_recent_recipe_not_the_best_run_per_size(open_page, data_root, runs_copy):
    # An older run of another recipe scores higher at 64 px: the best-per-size pick took it over the sweep's own.
    other = _clone(runs_copy[64], "20000101-000000-64px-res-cnn-old-0000", auc_shift=0.3, epochs=12)
    at = open_page("compare.py", data_root, other.parent).run()
    assert not at.exception and not at.error
    assert sorted(at.multiselect(key="compare_runs").value) == sorted(p.name for p in runs_copy.values())


def test_default_selection_after_an_images_or_pixels_grid_is_the_whole_grid(open_page, data_root, runs_copy):
    """A grid (`core.study --subsets`) is one study of one recipe at several training subsets: opened after it,
    Compare selects every subset of it (for the frontier), not the latest run's subset alone, and still no run
    of another study or another recipe."""
    grid = [_clone(runs_copy[size], f"29990101-00000{i}-{size}px-grid-{subset}", name="study-g-s0", subset=subset)
            for i, (size, subset) in enumerate([(28, 64), (64, 64), (28, 128), (64, 128)])]
    _clone(runs_copy[28], "29990101-000010-28px-other-study", name="study-h-s0", subset=64)  # older than the grid's last
    _clone(runs_copy[64], "29990101-000011-64px-other-recipe", name="study-g-s1", subset=64, epochs=12)
    latest = _clone(runs_copy[28], "29990101-000020-28px-grid-256", name="study-g-s1", subset=256)
    at = open_page("compare.py", data_root, latest.parent).run()
    assert not at.exception and not at.error
    assert sorted(at.multiselect(key="compare_runs").value) == sorted(p.name for p in [*grid, latest])


def test_a_seed_run_twice_counts_once_and_the_page_says_which(open_page, data_root, runs_copy):
    again = _clone(runs_copy[28], runs_copy[28].name + "-again", name="study-x-s0")  # same recipe and seed 0
    at = open_page("compare.py", data_root, again.parent).run()
    assert not at.exception and not at.error
    assert again.name in at.multiselect(key="compare_runs").value
    row = table_with(at, "seeds").value.set_index("group").loc["28 px · res-cnn"]
    assert (row["runs"], row["seeds"]) == (1, "0")  # not "0, 0": one seed, not two
    note = (f"2 runs repeat seed 0 of 28 px · res-cnn; the most recent ({again.name}) is used, the other "
            f"({runs_copy[28].name}) left out.")
    assert note in texts(at.caption)


def test_a_repeated_seeds_newest_run_without_test_scores_is_not_replaced_by_the_older_in_the_answer(
        open_page, data_root, runs_copy):
    """The page says the most recent run of a repeated seed is used; while that run has no test scores (it is still
    training), the paired answer took the older run instead, so its Δ and decision spoke of a run the page said it
    left out. Now no 28 px comparison is made until the counted run is tested."""
    again = _clone(runs_copy[28], runs_copy[28].name + "-again")  # same recipe and seed 0, newer
    runs.scores_path(again, "test").unlink()
    at = open_page("compare.py", data_root, again.parent).run()
    assert not at.exception and sorted(at.multiselect(key="compare_runs").value) == sorted(
        [again.name, *(p.name for p in runs_copy.values())])
    assert any(f"the most recent ({again.name}) is used" in c for c in texts(at.caption))
    answers = [df.value for df in at.dataframe if "decision" in df.value.columns]
    assert not any("28 px" in c for df in answers for c in df["comparison"]), answers


def test_the_url_reopens_the_same_view_and_drops_unknown_runs(open_page, data_root, runs_copy):
    at = open_page("compare.py", data_root, runs_copy[28].parent)
    at.query_params.update({"runs": [runs_copy[64].name, "no-such-run](http://x)"], "compare_smooth": "0.5",
                            "compare_overlay": "0", "compare_correction": "bh", "compare_margin": "7"})
    at.run()
    assert not at.exception and not at.error
    assert at.multiselect(key="compare_runs").value == [runs_copy[64].name]
    (warning,) = [w for w in texts(at.warning) if "this link names" in w]
    assert warning.startswith("1 run(s) this link names are not in") and "no-such-run" not in warning
    assert (at.slider(key="compare_smooth").value, at.toggle(key="compare_overlay").value) == (0.5, False)
    assert at.radio(key="compare_correction").value == "bh"
    assert at.number_input(key="compare_margin").value == 0.01  # out of range in the link: the default
    # What the page now shows is in its URL; a default is left out of it.
    assert at.query_params["runs"] == runs_copy[64].name and "no-such-run" not in str(at.query_params)
    at.slider(key="compare_smooth").set_value(0.0).run()
    at.multiselect(key="compare_runs").select(runs_copy[28].name).run()
    assert "compare_smooth" not in at.query_params and at.query_params["compare_overlay"] == "0"
    assert sorted(at.query_params["runs"]) == sorted([runs_copy[28].name, runs_copy[64].name])


def layers_of(spec, mark: str) -> list[dict]:
    return [lay for row in panels(spec) for p in row for lay in p["layer"]
            if (lay["mark"]["type"] if isinstance(lay["mark"], dict) else lay["mark"]) == mark]


def test_step_and_wall_time_axes_and_best_and_resume_markers(open_page, data_root, runs_copy):
    run_dir = runs_copy[28]
    rows = runs.read_metrics(run_dir)
    rows[1]["resumed"] = True  # as the trainer marks the first epoch after a resume
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    at = open_page("compare.py", data_root, run_dir.parent).run()
    assert not at.exception and not at.error
    spec, df = chart_by(at, is_curves)
    (best,) = {json.dumps(lay["transform"]) for lay in layers_of(spec, "point") if lay["mark"].get("shape") == "diamond"}
    assert "datum.best" in best
    mine = df[(df["run"] == run_dir.name) & (df["split"] == "val") & (df["metric"] == "loss")].sort_values("epoch")
    assert list(mine["best"]) == [r["epoch"] == rows[-1]["best_epoch"] for r in rows]
    assert list(mine["resumed"]) == [False, True]
    assert any("datum.resumed" in json.dumps(lay["transform"]) for lay in layers_of(spec, "rule"))

    batch = runs.read_config(run_dir)["train"]["batch_size"]
    at.radio(key="compare_curve_x").set_value("step").run()
    spec, df = chart_by(at, is_curves)
    assert line_encoding(panels(spec)[0][0])["x"]["field"] == "step" and at.query_params["compare_curve_x"] == "step"
    mine = df[(df["run"] == run_dir.name) & (df["split"] == "val") & (df["metric"] == "loss")].sort_values("epoch")
    np.testing.assert_allclose(mine["step"], np.cumsum([np.ceil(r["images"] / batch) for r in rows]))
    at.radio(key="compare_curve_x").set_value("wall time").run()
    spec, df = chart_by(at, is_curves)
    assert line_encoding(panels(spec)[0][0])["x"]["field"] == "minutes"
    mine = df[(df["run"] == run_dir.name) & (df["split"] == "val") & (df["metric"] == "loss")].sort_values("epoch")
    np.testing.assert_allclose(mine["minutes"], np.cumsum([r["seconds"] / 60 for r in rows]))


def test_group_and_colour_by_a_setting(open_page, data_root, runs_copy):
    twin = _second_seed(runs_copy[28], -0.1)
    at = open_page("compare.py", data_root, twin.parent).run()
    assert at.selectbox(key="compare_group_by").options == ["recipe and size (seed groups)", "seed", "size"]
    at.selectbox(key="compare_group_by").set_value("seed").run()  # across sizes: seed 0 has two runs
    assert not at.exception and at.query_params["compare_group_by"] == "seed"
    spec, df = chart_by(at, is_curves)
    assert line_encoding(panels(spec)[0][0])["color"]["scale"]["domain"] == ["seed=0", "seed=1"]
    runs_of = df.dropna(subset=["mean"]).groupby("series")["runs"].max().to_dict()
    assert runs_of == {"seed=0": 2, "seed=1": 1}

    at.toggle(key="compare_bands").set_value(False).run()
    at.selectbox(key="compare_colour").set_value("size").run()
    spec, df = chart_by(at, is_curves)
    enc = line_encoding(panels(spec)[0][0])
    assert enc["color"]["field"] == "colour" and enc["color"]["scale"]["domain"] == ["size=28", "size=64"]
    assert enc["detail"]["field"] == "series"  # still one line per run
    assert df.dropna(subset=["colour"]).groupby("colour")["run"].nunique().to_dict() == {"size=28": 2, "size=64": 1}
    # With the bands back on, the colour chosen no longer applies: the page says so rather than ignore it silently.
    assert not any("apply with **Mean ± sd over runs** off" in c for c in texts(at.caption))
    at.toggle(key="compare_bands").set_value(True).run()
    assert any("apply with **Mean ± sd over runs** off" in c for c in texts(at.caption))


def test_runs_read_in_size_then_seed_order(open_page, data_root, runs_copy):
    """Selection order put seed 10 before seed 5 (run ids sort as text): legends and lists go by size, then seed."""
    for seed in (10, 5):
        twin = runs_copy[28].parent / f"{runs_copy[28].name}-seed{seed}"
        shutil.copytree(runs_copy[28], twin)
        config = json.loads((twin / "config.json").read_text())
        config["train"]["seed"] = seed
        runs.write_json(twin / "config.json", config)
    at = open_page("compare.py", data_root, runs_copy[28].parent).run()
    at.toggle(key="compare_bands").set_value(False).run()
    assert not at.exception
    spec, _ = chart_by(at, is_curves)
    domain = line_encoding(panels(spec)[0][1])["color"]["scale"]["domain"]
    assert len(domain) == 4 and "64 px" in domain[-1], domain
    assert [int(re.search(r"seed (\d+)", d).group(1)) if "seed" in d else 0 for d in domain[:3]] == [0, 5, 10], domain
