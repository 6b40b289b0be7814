"""core.export on a real (tiny) finished run: model.onnx scores the whole test split as torch did, loaded in a
subprocess with only onnxruntime and numpy; the model card says only what the run folder holds; the CLI's bad
input; the Run page's export button (AppTest)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data import chestmnist as D
from core.export.__main__ import main
from core.export.folder import CARD_JSON, CARD_MD, MODEL_FILE, export_run, thresholds_file
from core.metrics import thresholds as T
from core.runs import record as runs

# Only onnxruntime and numpy: the normalisation is read from the file's own metadata, as a stranger would.
STANDALONE = """
import json, sys
import numpy as np
import onnxruntime as ort
folder, images_npy, out_npy = sys.argv[1:]
sess = ort.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
meta = sess.get_modelmeta().custom_metadata_map
assert meta["normalisation"].startswith("x = pixel / 127.5 - 1"), meta
images = np.load(images_npy)
x = images[:, None].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
name = sess.get_inputs()[0].name
probs = np.concatenate([sess.run(None, {name: x[i:i + 7]})[0] for i in range(0, len(x), 7)])  # batch is dynamic
thr = json.load(open(folder + "/thresholds.json"))["classes"]
assert list(thr) == json.loads(meta["classes"])
np.save(out_npy, probs)
print(sorted(m for m in sys.modules if m == "core" or m.startswith("core.") or m == "torch"))
"""


@pytest.fixture(scope="module")
def exported(finished_runs, tmp_path_factory) -> tuple[Path, Path, dict]:
    run_dir = finished_runs[64]
    out = tmp_path_factory.mktemp("export") / "res-cnn-64"
    return run_dir, out, export_run(run_dir, out, latency_images=16)


def test_the_export_folder_scores_the_test_split_as_torch_without_this_repository(exported, data_root, tmp_path):
    run_dir, out, card = exported
    assert sorted(p.name for p in out.iterdir()) == sorted([MODEL_FILE, thresholds_file(out).name, CARD_MD, CARD_JSON])
    images = D.load(data_root, 64).test.images
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "standalone.py"
    script.write_text(STANDALONE)
    # -I: isolated, so neither the repository nor PYTHONPATH is on the path; run from elsewhere.
    done = subprocess.run([sys.executable, "-I", str(script), str(out), str(tmp_path / "images.npy"),
                           str(tmp_path / "probs.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # no core, no torch
    scores, _ = runs.load_scores(run_dir, "test")
    diff = np.abs(np.load(tmp_path / "probs.npy") - scores).max()
    assert diff <= 1e-5, diff
    assert card["cost"]["onnx_vs_torch_max_abs_diff"] <= 1e-5


def test_the_card_says_only_what_the_run_folder_holds(exported):
    run_dir, out, card = exported
    assert json.loads((out / CARD_JSON).read_text()) == json.loads(json.dumps(card))
    config, test = runs.read_config(run_dir), runs.read_test_metrics(run_dir)
    _, labels = runs.load_scores(run_dir, "test")
    assert card["data"]["md5"] == config["data"]["md5"] and card["data"]["split_counts"] == config["data"]["n"]
    assert card["data"]["official"] is False and card["data"]["verdict"].startswith("NOT the official ChestMNIST")
    assert card["recipe"] == config["train"]
    assert card["test"]["auc_medmnist"] == pytest.approx(test["auc"]) and card["test"]["images"] == len(labels)
    assert card["test"]["auc_ci"] == pytest.approx(test["auc_ci"])
    assert card["test"]["acc_medmnist"] == pytest.approx(test["acc"])
    assert card["test"]["acc_ci"][0] <= test["acc"] <= card["test"]["acc_ci"][1]
    assert [v["positives"] for v in card["test"]["per_class"].values()] == labels.sum(axis=0).tolist()
    assert card["test"]["calibration"]["ece"] == pytest.approx(test["ece"])
    chosen = T.load_thresholds(runs.chosen_thresholds_path(run_dir), D.CLASS_NAMES)
    np.testing.assert_allclose(list(card["thresholds"]["per_class"].values()), chosen)
    np.testing.assert_allclose(T.load_thresholds(thresholds_file(out), D.CLASS_NAMES), chosen)  # loads as a run's
    assert "on val" in card["thresholds"]["source"] and card["thresholds"]["tuned_on"] == "val"
    assert card["cost"]["params"] > 0 and card["cost"]["flops"] > 0 and card["cost"]["onnx_ms_per_image"] > 0
    text = (out / CARD_MD).read_text()
    assert "NOT FOR CLINICAL USE" in text and config["data"]["md5"] in text and "ChestX-ray14" not in text
    assert f"{test['auc']:.4f}" in text


def test_cli_exports_and_refuses_bad_folders(finished_runs, tmp_path, capsys):
    run_dir = finished_runs[28]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("mine")
    (tmp_path / "not-a-run").mkdir()
    for argv, says in [([str(run_dir), "--out", str(run_dir / "export")], "inside the run folder"),
                       ([str(run_dir), "--out", str(taken)], "not an empty folder"),
                       ([str(tmp_path / "not-a-run"), "--out", str(tmp_path / "new")], "missing"),
                       ([str(run_dir), "--out", str(tmp_path / "n"), "--latency-images", "0"], "at least 1")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err, err
    assert not (run_dir / "export").exists() and not (tmp_path / "new").exists()
    assert main([str(run_dir), "--out", str(tmp_path / "ok"), "--latency-images", "4"]) == 0
    assert "max |onnx - torch|" in capsys.readouterr().out and (tmp_path / "ok" / MODEL_FILE).is_file()


def test_run_page_exports_a_zip_on_request(open_page, data_root, finished_runs):
    run_dir = finished_runs[28]
    at = open_page("run.py", data_root, run_dir.parent)
    at.query_params["run"] = run_dir.name
    at.run()
    assert not at.exception and not at.get("download_button")  # nothing is built before the click
    at.button(key="run_export").click().run()
    assert not at.exception and not at.error
    assert at.get("download_button")
    data = at.session_state["run_export_zip"][1]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sorted(names) == sorted(f"{run_dir.name}/{n}" for n in (MODEL_FILE, "thresholds.json", CARD_MD, CARD_JSON))


def test_evaluation_scores_through_onnxruntime_as_through_torch(runs_copy, data_root, monkeypatch):
    """Over ONNX_MIN_IMAGES images on the CPU, evaluation scores through onnxruntime, cached per checkpoint;
    the saved scores and metrics are torch's (the fixture's own evaluation) within 1e-6; a failed export
    falls back to torch."""
    from core.evaluate import scoring

    run_dir = runs_copy[28]
    torch_scores, _ = runs.load_scores(run_dir, "test")
    torch_auc = runs.read_test_metrics(run_dir)["auc"]
    monkeypatch.setattr(scoring, "ONNX_MIN_IMAGES", 0)
    monkeypatch.setattr(scoring, "_ONNX_SESSIONS", {})
    scoring.evaluate_run(run_dir, "cpu", data_root=data_root)
    assert len(scoring._ONNX_SESSIONS) == 1
    np.testing.assert_allclose(runs.load_scores(run_dir, "test")[0], torch_scores, atol=1e-6, rtol=0)
    assert runs.read_test_metrics(run_dir)["auc"] == pytest.approx(torch_auc, abs=1e-6)
    scoring.evaluate_run(run_dir, "cpu", data_root=data_root)  # the same checkpoint: no second export
    assert len(scoring._ONNX_SESSIONS) == 1

    import core.export.onnx_model as onnx_model

    def broken(*a, **k):
        raise RuntimeError("exporter cannot trace this model")
    monkeypatch.setattr(onnx_model, "export_onnx", broken)
    monkeypatch.setattr(scoring, "_ONNX_SESSIONS", {})
    scoring.evaluate_run(run_dir, "cpu", data_root=data_root)
    assert scoring._ONNX_SESSIONS == {}
    np.testing.assert_allclose(runs.load_scores(run_dir, "test")[0], torch_scores, atol=1e-6, rtol=0)
