"""pages/compare.py through streamlit's AppTest, against the numbers in real run folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

from core import data as D
from core import runs
from core.study import build_report


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def chart(at, i: int) -> tuple[dict, "pd.DataFrame"]:  # noqa: F821
    """(Vega-Lite spec, its data) of the i-th altair chart on the page."""
    proto = at.get("vega_lite_chart")[i].proto
    (dataset,) = proto.datasets
    return json.loads(proto.spec), pa.ipc.open_stream(dataset.data.data).read_all().to_pandas()


def table_with(at, column: str):
    return next(df for df in at.dataframe if column in df.value.columns)


def summary(at):
    """The two summary tables (validation/test scores, compute cost) joined on the run id."""
    scores = table_with(at, "test AUC (medmnist)").value.set_index("run id")
    cost = table_with(at, "GFLOPs per image").value.set_index("run id")
    return scores.join(cost.drop(columns=["run"]))


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
    at = open_page("compare.py", data_root, tmp_path / "runs").run()
    assert not at.exception and not at.error
    assert any("has finished an epoch" in i for i in texts(at.info))


def test_default_selection_and_one_colour_per_size(open_page, data_root, finished_runs):
    runs_dir = finished_runs[28].parent
    at = open_page("compare.py", data_root, runs_dir).run()
    assert not at.exception and not at.error
    assert sorted(at.multiselect(key="compare_runs").value) == sorted(p.name for p in finished_runs.values())
    assert len(at.get("vega_lite_chart")) == 3  # curves, AUC vs compute, per-class heat table

    spec, df = chart(at, 0)
    # Five metric panels in rows of three and two: no empty cell with a stray axis.
    assert [[p["title"] for p in row] for row in panels(spec)] == [
        ["loss", "AUC (medmnist)", "ACC (medmnist, 0.5)"], ["macro F1 (fixed threshold)", "micro F1 (fixed threshold)"]]
    enc = line_encoding(panels(spec)[0][0])
    assert enc["color"]["field"] == "series"
    assert enc["color"]["scale"]["domain"] == ["28 px", "64 px"]
    assert {t["field"] for t in enc["tooltip"]} >= {"run", "size", "epoch", "value"}
    # The split legend shows line samples, so its solid/dashed key is visible (not two identical dots).
    assert enc["strokeDash"]["field"] == "split" and enc["strokeDash"]["legend"]["symbolType"] == "stroke"
    assert sorted(df["series"].unique()) == ["28 px", "64 px"]
    assert set(df["metric"]) == {"loss", "AUC (medmnist)", "ACC (medmnist, 0.5)", "macro F1 (fixed threshold)",
                                 "micro F1 (fixed threshold)"}
    assert set(df["split"]) == {"train", "val"}
    for size, run_dir in finished_runs.items():  # the plotted values are the logged ones
        rows = runs.read_metrics(run_dir)
        mine = df[(df["run"] == run_dir.name) & (df["split"] == "val") & (df["metric"] == "AUC (medmnist)")]
        np.testing.assert_allclose(mine.sort_values("epoch")["value"], [r["val_auc"] for r in rows])
        assert set(mine["size"]) == {size}

    # The data note: generated data is not ChestMNIST and the page says which runs.
    (warning,) = texts(at.warning)
    assert warning.startswith("Not ChestMNIST") and all(p.name in warning for p in finished_runs.values())


def test_small_multiples_toggle(open_page, data_root, finished_runs):
    at = open_page("compare.py", data_root, finished_runs[28].parent).run()
    at.toggle(key="compare_overlay").set_value(False).run()
    spec, df = chart(at, 0)
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
        assert row["val loss at that epoch"] == pytest.approx(best["val_loss"])
        assert row["tested checkpoint epoch"] == rows[-1]["best_epoch"]
        assert row["test AUC (medmnist)"] == pytest.approx(test["auc"])
        lo, hi = map(float, row["test AUC 95% CI"].split("–"))
        assert (lo, hi) == pytest.approx(tuple(test["auc_ci"]), abs=5e-5)
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
    assert shown_columns(table_with(at, "test AUC (medmnist)")) == [
        "run", "epochs", "best val AUC", "at epoch", "val loss", "tested epoch", "test AUC", "95% CI", "test ACC",
        "macro F1", "micro F1", "exact match"]
    assert shown_columns(table_with(at, "GFLOPs per image")) == [
        "run", "size (px)", "model", "parameters", "GFLOPs/image", "s/epoch", "train img/s", "inference ms/image"]

    # AUC against compute: one point per run, coloured by resolution, CI bars from test_metrics.json.
    spec, df = chart(at, 1)
    points = spec["layer"][1]["encoding"]
    assert points["color"]["field"] == "size" and points["x"]["scale"]["type"] == "log"
    df = df.set_index("run id")
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
    spec, df = chart(at, 2)
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


def test_runs_sharing_a_size_get_their_own_colour(open_page, data_root, runs_copy):
    twin = runs_copy[28].parent / (runs_copy[28].name + "-twin")
    shutil.copytree(runs_copy[28], twin)
    at = open_page("compare.py", data_root, twin.parent).run()
    at.multiselect(key="compare_runs").set_value([runs_copy[28].name, twin.name, runs_copy[64].name]).run()
    assert not at.exception
    spec, df = chart(at, 0)
    domain = line_encoding(panels(spec)[0][0])["color"]["scale"]["domain"]
    assert len(domain) == 3 and len(set(domain)) == 3 and "64 px" in domain
    assert all(name.startswith("28 px · ") for name in domain if name != "64 px")
    assert df.groupby("series")["run"].nunique().to_dict() == {name: 1 for name in domain}


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
    assert stopped.name in warning and official.name not in warning
    table = summary(at)
    assert np.isnan(table.loc[stopped.name, "test AUC (medmnist)"])
    assert any("Not evaluated on test yet" in c and "64 px" in c for c in texts(at.caption))
    _, heat = chart(at, 2)
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
