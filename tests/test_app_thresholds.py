"""The Thresholds page (AppTest) on real finished runs: sliders, exact metrics, presets, test view, save."""
import json

import numpy as np
import pytest

from core import metrics
from core.runs import record as R
from core.metrics import thresholds as T
from core.data.chestmnist import CLASS_NAMES, N_CLASSES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _open(open_page, data_root, runs_dir, run_dir):
    at = open_page("thresholds.py", data_root, runs_dir)
    at.session_state["run"] = run_dir.name
    at.run()
    assert not at.exception, at.exception
    return at


def _sliders(at):
    return np.array([at.slider(key=f"thr_{c}").value for c in range(N_CLASSES)])


def _table(at):
    return at.dataframe[0].value


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture
def run28(runs_copy):
    return runs_copy[28]


def test_no_runs_shows_guidance(open_page, data_root, tmp_path):
    at = open_page("thresholds.py", data_root, tmp_path / "empty").run()
    assert not at.exception
    assert any("No evaluated runs" in i.value for i in at.info)
    assert not at.slider and not at.dataframe


def test_sliders_start_at_saved_thresholds_and_table_matches(open_page, data_root, run28):
    saved = np.round(np.linspace(0.05, 0.9, N_CLASSES), 3)
    T.save_thresholds(run28 / "thresholds.json", saved, CLASS_NAMES, method="hand")
    at = _open(open_page, data_root, run28.parent, run28)
    np.testing.assert_array_equal(_sliders(at), saved)
    assert "method: hand" in at.expander[0].label
    scores, labels = R.load_scores(run28, "val")
    tm = metrics.threshold_metrics(labels, scores, saved)
    table = _table(at)
    assert list(table["Finding"]) == list(CLASS_NAMES)
    for col, key in [("Precision", "precision"), ("Sensitivity", "recall"), ("F1", "f1"), ("TP", "tp"), ("FP", "fp"),
                     ("FN", "fn"), ("TN", "tn"), ("Support", "support")]:
        np.testing.assert_array_equal(table[col].to_numpy(), tm[key], err_msg=col)
    assert _metric(at, "Macro F1") == f"{tm['macro_f1']:.4f}"
    assert _metric(at, "Exact-match accuracy") == f"{tm['exact_match']:.4f}"
    assert _metric(at, "AUC (medmnist)") == f"{metrics.mean_auc(labels, scores):.4f}"
    assert "validation" in at.subheader[0].value


def test_moving_one_slider_changes_that_class_exactly(open_page, data_root, run28):
    at = _open(open_page, data_root, run28.parent, run28)
    scores, labels = R.load_scores(run28, "val")
    start = _sliders(at)
    c = 3
    # A new threshold that changes class c's predictions (the median of its scores).
    new = float(np.round(np.median(scores[:, c]), 2))
    assert (scores[:, c] >= new).sum() != (scores[:, c] >= start[c]).sum()
    before = _table(at).iloc[c]
    at.slider(key=f"thr_{c}").set_value(new).run()
    assert not at.exception
    vector = start.copy()
    vector[c] = new
    np.testing.assert_array_equal(_sliders(at), vector)
    tm = metrics.threshold_metrics(labels, scores, vector)
    row = _table(at).iloc[c]
    assert row["Threshold"] == new
    assert row["Precision"] == tm["precision"][c] and row["Sensitivity"] == tm["recall"][c]
    assert (row["TP"], row["FP"]) != (before["TP"], before["FP"])
    assert _metric(at, "Micro F1") == f"{tm['micro_f1']:.4f}"
    assert "method: manual" in at.expander[0].label
    # The other classes did not move.
    np.testing.assert_array_equal(_table(at).drop(index=c)["Precision"], np.delete(tm["precision"], c))


@pytest.mark.parametrize("preset, method, kw", [
    ("Youden's J", "youden", {}),
    ("F1-optimal", "f1", {}),
    ("Global 0.3 (the study's)", "fixed", {"value": 0.3}),
    ("Sensitivity at least X", "sensitivity", {"target": 0.9}),
])
def test_presets_set_sliders_to_core_choice(open_page, data_root, run28, preset, method, kw):
    T.save_thresholds(run28 / "thresholds.json", np.full(N_CLASSES, 0.77), CLASS_NAMES)
    at = _open(open_page, data_root, run28.parent, run28)
    at.radio(key="thr_preset").set_value(preset).run()
    if method == "sensitivity":
        at.number_input(key="thr_target").set_value(0.9).run()
    at.button(key="thr_apply").click().run()
    assert not at.exception
    scores, labels = R.load_scores(run28, "val")
    choice = T.choose(method, labels, scores, **kw)
    np.testing.assert_array_equal(_sliders(at), choice.thresholds)  # exact, even off the sliders' 0.001 grid
    assert all(at.slider(key=f"thr_{c}").step == 0.001 for c in range(N_CLASSES))
    assert f"method: {choice.method}" in at.expander[0].label
    np.testing.assert_array_equal(_table(at)["F1"], metrics.threshold_metrics(labels, scores, choice.thresholds)["f1"])


def test_show_on_test_switches_numbers_not_thresholds(open_page, data_root, run28):
    at = _open(open_page, data_root, run28.parent, run28)
    thresholds = _sliders(at)
    val_table = _table(at)
    at.toggle(key="thr_on_test").set_value(True).run()
    assert not at.exception
    np.testing.assert_array_equal(_sliders(at), thresholds)
    scores, labels = R.load_scores(run28, "test")
    tm = metrics.threshold_metrics(labels, scores, thresholds)
    table = _table(at)
    np.testing.assert_array_equal(table["Precision"], tm["precision"])
    np.testing.assert_array_equal(table["Support"], tm["support"])
    assert not table["Support"].equals(val_table["Support"])
    assert _metric(at, "AUC (medmnist)") == f"{metrics.mean_auc(labels, scores):.4f}"
    assert "TEST" in at.subheader[0].value
    assert any("test" in i.value for i in at.info)


def test_save_writes_a_file_load_thresholds_reads_back(open_page, data_root, run28):
    at = _open(open_page, data_root, run28.parent, run28)
    at.slider(key="thr_0").set_value(0.42).run()
    at.slider(key="thr_13").set_value(0.07).run()
    expected = _sliders(at)
    chosen = (run28 / "thresholds.json").read_bytes()
    at.button(key="thr_save").click().run()
    assert not at.exception and at.success
    np.testing.assert_array_equal(T.load_thresholds(R.user_thresholds_path(run28), CLASS_NAMES), expected)
    assert (run28 / "thresholds.json").read_bytes() == chosen  # the validation-chosen set stays
    saved = json.loads(R.user_thresholds_path(run28).read_text())
    assert saved["method"] == "manual" and saved["split"] == "val"
    # A preset saved under its own name; a fresh session starts from the saved file.
    at.radio(key="thr_preset").set_value("F1-optimal").run()
    at.button(key="thr_apply").click().run()
    at.button(key="thr_save").click().run()
    assert json.loads(R.user_thresholds_path(run28).read_text())["method"] == "f1"
    fresh = _open(open_page, data_root, run28.parent, run28)
    np.testing.assert_array_equal(_sliders(fresh), _sliders(at))
    assert fresh.get("download_button")
    assert any("your saved thresholds" in c.value for c in fresh.caption)


def test_revert_to_the_validation_chosen_set_and_evaluation_keeps_the_users(open_page, data_root, run28):
    from core.evaluate.scoring import evaluate_run

    chosen = T.load_thresholds(run28 / "thresholds.json", CLASS_NAMES)
    at = _open(open_page, data_root, run28.parent, run28)
    assert any("chosen on validation" in c.value for c in at.caption)
    at.slider(key="thr_0").set_value(0.42).run()
    at.button(key="thr_save").click().run()
    mine = R.user_thresholds_path(run28).read_bytes()
    evaluate_run(run28, "cpu")  # re-evaluation rewrites its own file only
    assert R.user_thresholds_path(run28).read_bytes() == mine
    reopened = _open(open_page, data_root, run28.parent, run28)
    assert _sliders(reopened)[0] == 0.42 and any("your saved thresholds" in c.value for c in reopened.caption)
    reopened.button(key="thr_revert").click().run()
    np.testing.assert_array_equal(_sliders(reopened), chosen)
    assert any("chosen on validation" in c.value for c in reopened.caption)
    assert R.user_thresholds_path(run28).read_bytes() == mine  # reverting shows; saving again writes


def test_saving_into_a_folder_that_is_not_a_runs_folder_is_refused(open_page, data_root, run28):
    (run28.parent / "thesis.tex").write_text("not a run")
    at = _open(open_page, data_root, run28.parent, run28)
    at.button(key="thr_save").click().run()
    assert any("Not saved" in e.value and "thesis.tex" in e.value for e in at.error)
    assert not R.user_thresholds_path(run28).exists()


def test_tuning_while_showing_test_is_recorded(open_page, data_root, run28):
    at = _open(open_page, data_root, run28.parent, run28)
    at.toggle(key="thr_on_test").set_value(True).run()
    at.slider(key="thr_2").set_value(0.2).run()
    assert any("chosen on test" in w.value for w in at.warning)
    # The warning is read before the Save button, not after it.
    kinds = ["save" if getattr(n, "key", None) == "thr_save" else "test-warning"
             for n in _walk(at.main) if getattr(n, "key", None) == "thr_save"
             or (n in at.warning and "chosen on test" in n.value)]
    assert "test-warning" in kinds and kinds.index("test-warning") < kinds.index("save")
    at.button(key="thr_save").click().run()
    assert json.loads(R.user_thresholds_path(run28).read_text())["split"] == "test"


def test_undefined_auc_and_broken_file(open_page, data_root, run28):
    # A class without positives in validation: its AUC is "undefined" (not NaN) and presets fall back.
    scores, labels = R.load_scores(run28, "val")
    labels = labels.copy()
    labels[:, 13] = 0
    R.save_scores(run28, "val", scores, labels)
    (run28 / "thresholds.json").write_text("{not json")
    at = _open(open_page, data_root, run28.parent, run28)
    assert any("not valid JSON" in e.value for e in at.error)
    np.testing.assert_array_equal(_sliders(at), T.youden(labels, scores))  # started from Youden instead
    table = _table(at)
    assert table["AUC"].iloc[13] == "undefined" and "nan" not in " ".join(table["AUC"]).lower()
    assert "nan" not in _metric(at, "AUC (medmnist)").lower()
    at.selectbox(key="thr_curve_class").set_value(13).run()
    assert any("undefined" in i.value for i in at.info)
    assert any("hernia" in cap.value for cap in at.caption)  # listed as a fallback class
    at.selectbox(key="thr_curve_class").set_value(2).run()
    assert len(at.get("vega_lite_chart")) == 2  # ROC + PR of a defined class
    # Moving another class's slider leaves hernia without a validation threshold: the note stays.
    at.slider(key="thr_2").set_value(0.3).run()
    assert "method: manual" in at.expander[0].label
    assert any("hernia (now 0.500)" in cap.value for cap in at.caption)
    at.button(key="thr_save").click().run()  # and the file still records hernia as a fallback class
    assert json.loads(R.user_thresholds_path(run28).read_text())["fallback_classes"] == ["hernia"]
    at.slider(key="thr_13").set_value(0.25).run()  # moved by hand: no longer the fallback value
    assert any("hernia (now 0.250)" in cap.value for cap in at.caption)
    at.button(key="thr_save").click().run()
    assert json.loads(R.user_thresholds_path(run28).read_text())["fallback_classes"] == []
    # The 0.5 preset sets 0.5 everywhere by design: saved as core.metrics.thresholds.choose records it, nothing fell back.
    at.radio(key="thr_preset").set_value("0.5").run()
    at.button(key="thr_apply").click().run()
    at.button(key="thr_save").click().run()
    saved = json.loads(R.user_thresholds_path(run28).read_text())
    want = T.choose("fixed", labels, scores, value=0.5)
    assert (saved["method"], saved["fallback_classes"]) == (want.method, want.fallback) == ("fixed-0.5", [])
    # ... and moving another slider afterwards does not turn hernia's 0.5 into a fallback either.
    at.slider(key="thr_2").set_value(0.3).run()
    at.button(key="thr_save").click().run()
    saved = json.loads(R.user_thresholds_path(run28).read_text())
    assert (saved["method"], saved["fallback_classes"]) == ("manual", [])
    # A file's own fallback classes come back with it: Youden saved, page reopened from the file.
    at.radio(key="thr_preset").set_value("Youden's J").run()
    at.button(key="thr_apply").click().run()
    at.button(key="thr_save").click().run()
    reopened = _open(open_page, data_root, run28.parent, run28)
    reopened.slider(key="thr_2").set_value(0.3).run()
    reopened.button(key="thr_save").click().run()
    assert json.loads(R.user_thresholds_path(run28).read_text())["fallback_classes"] == ["hernia"]


def test_curves_mark_the_operating_point(open_page, data_root, run28):
    at = _open(open_page, data_root, run28.parent, run28)
    at.selectbox(key="thr_curve_class").set_value(5).run()
    at.slider(key="thr_5").set_value(0.5).run()
    scores, labels = R.load_scores(run28, "val")
    tm = metrics.threshold_metrics(labels, scores, _sliders(at))
    specs = [json.loads(ch.proto.spec) for ch in at.get("vega_lite_chart")]
    datasets = [ch.proto.datasets for ch in at.get("vega_lite_chart")]
    assert len(specs) == 2
    # The point layer's data holds the current operating point of class 5.
    roc_point = _point_values(specs[0], datasets[0])
    pr_point = _point_values(specs[1], datasets[1])
    assert roc_point["Sensitivity"] == pytest.approx(tm["recall"][5])
    assert roc_point["False positive rate (1 − specificity)"] == pytest.approx(1 - tm["specificity"][5])
    assert pr_point["Precision"] == pytest.approx(tm["precision"][5])


def _point_values(spec, datasets):
    """Values of the layer drawn with mark 'point' (inline or in a named dataset)."""
    import pyarrow as pa

    layer = next(lay for lay in spec["layer"] if (lay["mark"]["type"] if isinstance(lay["mark"], dict)
                                                  else lay["mark"]) == "point")
    data = layer.get("data", {})
    if "values" in data:
        return data["values"][0]
    name = data["name"]
    for ds in datasets:
        if ds.name == name:
            return pa.ipc.open_stream(ds.data.data).read_all().to_pylist()[0]
    raise AssertionError(f"no dataset {name}")


def test_switching_runs_loads_that_runs_file(open_page, data_root, runs_copy):
    run28, run64 = runs_copy[28], runs_copy[64]
    T.save_thresholds(run28 / "thresholds.json", np.full(N_CLASSES, 0.25), CLASS_NAMES)
    T.save_thresholds(run64 / "thresholds.json", np.full(N_CLASSES, 0.65), CLASS_NAMES)
    at = _open(open_page, data_root, run28.parent, run28)
    at.slider(key="thr_1").set_value(0.9).run()
    assert _sliders(at)[1] == 0.9
    at.selectbox(key="run").set_value(run64.name).run()
    assert not at.exception
    np.testing.assert_array_equal(_sliders(at), np.full(N_CLASSES, 0.65))
    scores, labels = R.load_scores(run64, "val")
    np.testing.assert_array_equal(_table(at)["Precision"], metrics.threshold_metrics(labels, scores, 0.65)["precision"])


def _walk(node):
    """Every element under `node`, in page order."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)

