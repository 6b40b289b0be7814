"""Score splits with a run's best model, choose thresholds on validation, report on test.

    python -m core.evaluate checkpoints/<run-id> [--data-root MOVED_TO] [--device auto]
    python -m core.evaluate checkpoints/<run-id> --export-csv DIR          # the saved test scores, as medmnist's CSV
    python -m core.evaluate checkpoints/<run-id> --other-data ROOT --out NEW_DIR

A run is only ever (re)scored on the data file it was trained on (MD5 in its config); other data is
scored into a folder of its own, never over the run's results.
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from core.train import autotune
from core.data import batching
from core.data import chestmnist as D
from core import metrics
from core.runs import record as runs
from core.metrics import thresholds
from core.runs.datafile import check_same_data, config_of, run_data
from core.train.device import resolve_device
from core.models.registry import fold_batchnorm
from core.runs.checkpoints import load_model
from core.runs.record import RunError, load_scores, read_config, save_scores


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu",
            channels_last: bool | None = None, fold_bn: bool | None = None) -> np.ndarray:
    """Sigmoid probabilities (N, 14) float32 for uint8 images (N, H, W), from `model` in eval mode.

    `channels_last` / `fold_bn` left as None are what was measured fastest for this model, size and
    batch on this machine (core.train.autotune.choose_infer; folding batch norm into the convolutions gives
    the same scores up to float rounding). Unless `fold_bn=False` is passed, a copy runs and `model`
    is left as it was. Callers that predict many times with one model (timing loops) fold once and pass
    `fold_bn=False`; `model` is then used as given (and put in eval mode and, with `channels_last`,
    that layout in place).
    """
    if channels_last is None or fold_bn is None:
        choice = autotune.choose_infer(model, images.shape[-1], batch_size, device)
        channels_last = choice.channels_last if channels_last is None else channels_last
        if fold_bn is None:
            model = copy.deepcopy(model) if not choice.fold_bn else model
            fold_bn = choice.fold_bn
    net = fold_batchnorm(model) if fold_bn else model.eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    out = np.empty((len(images), D.N_CLASSES), dtype=np.float32)
    device = torch.device(device)
    for start in range(0, len(images), batch_size):
        x = batching.to_tensor(images[start:start + batch_size], device, channels_last)
        # fp32 always: bf16 rounding reorders nearly tied scores, and these are the scores metrics are computed on.
        out[start:start + len(x)] = torch.sigmoid(net(x).float()).cpu().numpy()
    return out


# Below this many images the ONNX export (about 3 s) costs more than onnxruntime saves: it scored res-cnn
# 1.5x (28 px), 2.2x (64 px) and 1.4x (224 px) faster than torch on 2 CPU cores (bench: export group).
ONNX_MIN_IMAGES = 4096
ONNX_MODELS = ("res-cnn",)  # the architectures (and their variants) whose gain the bench measured
_ONNX_SESSIONS: dict[tuple[str, int, int], Any] = {}  # (best checkpoint, its mtime_ns, size) -> onnxruntime session
_ONNX_KEEP = 4


def _onnx_session(run_dir: Path, model: torch.nn.Module, size: int) -> Any | None:
    """An onnxruntime session of the run's best checkpoint (`model`), cached per checkpoint file and
    version; None where onnxruntime is missing or the export fails (torch then scores)."""
    ckpt = runs.checkpoint_path(run_dir, "best")
    try:
        key = (str(ckpt.resolve()), ckpt.stat().st_mtime_ns, size)
    except OSError:
        return None
    if key not in _ONNX_SESSIONS:
        try:
            from core.export.onnx_model import export_onnx, session

            with tempfile.TemporaryDirectory(prefix="chestmnist-onnx-") as tmp:
                export_onnx(copy.deepcopy(model).cpu().eval(), size, Path(tmp) / "model.onnx")
                sess = session(Path(tmp) / "model.onnx", threads=torch.get_num_threads())
        except Exception:  # noqa: BLE001 - no onnxruntime, or a model the exporter cannot trace: torch scores
            return None
        while len(_ONNX_SESSIONS) >= _ONNX_KEEP:
            _ONNX_SESSIONS.pop(next(iter(_ONNX_SESSIONS)))
        _ONNX_SESSIONS[key] = sess
    return _ONNX_SESSIONS[key]


def run_scorer(run_dir: str | Path, model: torch.nn.Module, size: int, device: torch.device,
               n_images: int) -> Callable[[np.ndarray], np.ndarray]:
    """How evaluation scores uint8 images (N, size, size) with the run's best model `model`: onnxruntime
    on the CPU for at least ONNX_MIN_IMAGES images of an ONNX_MODELS model (its scores are torch's within
    1e-6), else `predict`
    with the layout and folding core.train.autotune measured fastest, folded once for every call."""
    name = runs.read_config(run_dir)["train"].get("model", "")
    if device.type == "cpu" and n_images >= ONNX_MIN_IMAGES and name.startswith(ONNX_MODELS):
        sess = _onnx_session(Path(run_dir), model, size)
        if sess is not None:
            from core.export.onnx_model import onnx_predict

            return lambda images: onnx_predict(sess, images)
    choice = autotune.choose_infer(model, size, 256, device)
    net = fold_batchnorm(model) if choice.fold_bn else copy.deepcopy(model).eval()
    return lambda images: predict(net, images, device=device, channels_last=choice.channels_last, fold_bn=False)


def evaluate_run(run_dir: str | Path, device: str = "auto", data: D.ChestData | None = None,
                 model: torch.nn.Module | None = None, data_root: str | Path | None = None) -> dict:
    """Score val and test with the best checkpoint and write the run's evaluation files.

    `data` (or the run's data, found by config.run_data from `data_root`) must be the file the run
    was trained on (MD5): a RunError otherwise, before anything is written. Writes the val and test
    scores, the thresholds chosen on validation (Youden's J, the study's ROC choice; a user's saved
    thresholds are a separate file and stay) and the test metrics (medmnist AUC/ACC with bootstrap
    CIs, F1 and friends at the validation-chosen thresholds) into the run folder through core.runs.
    Scores come from `run_scorer` (onnxruntime for large splits on the CPU, else torch). Returns the
    test metrics dict.
    """
    run_dir = Path(run_dir)
    if data is None:
        data = run_data(run_dir, data_root)
        # The data moved and its MD5 matched: the run's config now points at the new place (as on resume).
        runs.record_data_root(run_dir, data.root)
    else:
        check_same_data(run_dir, data)
    dev = resolve_device(device)
    model = model or load_model(run_dir, "best", dev)
    size = data.split("test").images.shape[-1]
    score = run_scorer(run_dir, model, size, dev, len(data.val) + len(data.test))
    scores = {s: score(data.split(s).images) for s in ("val", "test")}
    for s in scores:
        save_scores(run_dir, s, scores[s], data.split(s).labels)
    choice = thresholds.choose("youden", data.val.labels, scores["val"])
    thresholds.save_thresholds(runs.chosen_thresholds_path(run_dir), choice, D.CLASS_NAMES)
    result = metrics.summarize(data.test.labels, scores["test"], choice.thresholds, D.CLASS_NAMES)
    result.update(split="test", thresholds_from="val", threshold_method=choice.method,
                  data_root=str(data.root), data_file=data.path.name)
    runs.write_test_metrics(run_dir, result)
    return result


def evaluate_other(run_dir: str | Path, other_root: str | Path, out_dir: str | Path, device: str = "auto") -> dict:
    """Score the test split of other data (same size) with the run's best model into `out_dir`.

    `out_dir` must be new or empty and outside the run folder: the run's own results are never
    touched. The run's validation-chosen thresholds are applied. Writes the test scores and
    test metrics files (with which data and run) there, as a run folder holds them; returns the metrics dict.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir).expanduser()
    cfg = config_of(run_dir)
    check_out_dir(run_dir, out_dir)
    data = D.load(other_root, cfg.size)
    chosen = thresholds.load_thresholds(runs.chosen_thresholds_path(run_dir), D.CLASS_NAMES)
    scores = predict(load_model(run_dir, "best", resolve_device(device)), data.test.images, device=resolve_device(device))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_scores(out_dir, "test", scores, data.test.labels)
    result = metrics.summarize(data.test.labels, scores, chosen, D.CLASS_NAMES)
    result.update(split="test", thresholds_from="val of the run's own data", run=str(run_dir.resolve()),
                  data_root=str(data.root), data_file=data.path.name)
    runs.write_test_metrics(out_dir, result)
    return result


def check_out_dir(run_dir: Path, out_dir: Path) -> None:
    """RunError unless `out_dir` is a new or empty folder outside the run folder."""
    out, run = out_dir.resolve(), run_dir.resolve()
    if out == run or run in out.parents:
        raise RunError(f"--out {out_dir} is inside the run folder; choose a new folder outside it, so the run's "
                       "own results stay as they are.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {out_dir} exists and is not an empty folder; choose a new folder for these results.")


def export_evaluator_csv(run_dir: str | Path, out_dir: str | Path, split: str = "test") -> Path:
    """Write the split's scores as medmnist's Evaluator CSV (`index,score_0..score_13`, no header).

    The file name follows Evaluator.get_standard_evaluation_filename, so
    `medmnist.Evaluator.parse_and_evaluate` can re-score it against the official labels.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    train = read_config(run_dir)["train"]
    scores, labels = load_scores(run_dir, split)
    size_flag = "" if train["size"] == 28 else f"_{train['size']}"
    auc, acc = metrics.mean_auc(labels, scores), metrics.medmnist_acc(labels, scores)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"chestmnist{size_flag}_{split}_[AUC]{auc:.3f}_[ACC]{acc:.3f}@{run_dir.name}.csv"
    pd.DataFrame(scores).to_csv(path, header=None)
    return path


def measure_inference(run_dir: str | Path, images: np.ndarray, device: str | torch.device = "auto",
                      batch_size: int = 256, repeats: int = 3) -> dict:
    """Inference time of the run's best model on `images` (uint8 (N, H, W)), ms per image.

    Batches of `batch_size` through `predict` (evaluation's path: fp32, in the layout and
    with batch norm folded or not as core.train.autotune.choose_infer measured fastest, folded once) on
    `device`: one warm-up batch, then the median of `repeats` timed passes over all of `images`.
    """
    cfg = config_of(run_dir)
    dev = resolve_device(device)
    model = load_model(run_dir, "best", dev)
    choice = autotune.choose_infer(model, cfg.size, batch_size, dev)
    model = fold_batchnorm(model) if choice.fold_bn else model.eval()
    images = np.ascontiguousarray(images)
    kw = dict(batch_size=batch_size, device=dev, channels_last=choice.channels_last, fold_bn=False)
    predict(model, images[:batch_size], **kw)  # first-call allocations are not inference
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(model, images, **kw)  # copies scores back to the CPU, so CUDA work is finished
        times.append(time.perf_counter() - t)
    return {"inference_ms_per_image": float(np.median(times)) / len(images) * 1000, "inference_images": len(images),
            "inference_batch": batch_size, "inference_device": str(dev), "inference_threads": torch.get_num_threads()}
