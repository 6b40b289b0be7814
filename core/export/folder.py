"""Export a finished run into a folder of its own: model.onnx, the thresholds in effect, and a model card.

    DIR/model.onnx        dynamic batch; input spec and normalisation in its metadata (core.export.onnx_model)
    DIR/<thresholds file> per-finding thresholds and where they were tuned (readable by core.metrics.thresholds)
    DIR/MODEL_CARD.md     the card for people; DIR/model_card.json the same for programs (core.export.card)

The folder works without this repository: onnxruntime and numpy score an image normalised as the metadata says.
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from core.data.chestmnist import CLASS_NAMES
from core.evaluate.scoring import check_out_dir, predict
from core.export.card import NOT_FOR, build_card, card_markdown
from core.export.onnx_model import export_onnx, ms_per_image, onnx_predict, session
from core.files import atomic_write
from core.models.registry import count_params, flops_per_image
from core.predict.scoring import thresholds_source
from core.runs import record as runs
from core.runs.checkpoints import load_model

MODEL_FILE, CARD_MD, CARD_JSON = "model.onnx", "MODEL_CARD.md", "model_card.json"
LATENCY_BATCH = 64


def thresholds_file(out_dir: str | Path) -> Path:
    """The exported thresholds: a run's thresholds file in name and format, so core.runs names it."""
    return runs.chosen_thresholds_path(out_dir)


def export_run(run_dir: str | Path, out_dir: str | Path, latency_images: int = LATENCY_BATCH) -> dict:
    """Write the export folder (module docstring) for the run's best checkpoint; returns the card dict.

    `out_dir` must be new or empty and outside the run folder (RunError otherwise, before anything is
    written); the run must be evaluated (its test metrics, scores and thresholds are read). Latency is
    measured on `latency_images` random images at the run's size, in one batch, on the CPU.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir).expanduser()
    check_out_dir(run_dir, out_dir)
    runs.read_test_metrics(run_dir)  # a run that was never evaluated stops here, with what to do
    choice, split, source = thresholds_source(run_dir)
    train = runs.read_config(run_dir)["train"]
    size = int(train["size"])
    model = load_model(run_dir, "best", "cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = export_onnx(model, size, out_dir / MODEL_FILE,
                          {"run": run_dir.name, "architecture": train["model"], "thresholds": source,
                           "intended_use": NOT_FOR})
    sess = session(out_dir / MODEL_FILE)
    images = np.random.default_rng(0).integers(0, 256, (latency_images, size, size), dtype=np.uint8)
    torch_scores = predict(model, images, batch_size=latency_images)
    cost = {"params": count_params(model), "flops": flops_per_image(model, size), "export_s": seconds,
            "onnx_ms_per_image": ms_per_image(lambda x: onnx_predict(sess, x, latency_images), images),
            "torch_ms_per_image": ms_per_image(lambda x: predict(model, x, batch_size=latency_images), images),
            "onnx_vs_torch_max_abs_diff": float(np.abs(onnx_predict(sess, images) - torch_scores).max()),
            "batch": latency_images, "threads": torch.get_num_threads()}
    runs.write_json(thresholds_file(out_dir), {
        "split": split, "method": choice.method,
        "source": source, "decision": "present when probability >= threshold",
        "classes": {name: {"threshold": float(t)} for name, t in zip(CLASS_NAMES, choice.thresholds)},
        "fallback_classes": [CLASS_NAMES[c] for c in choice.fallback]})
    card = build_card(run_dir, cost)
    runs.write_json(out_dir / CARD_JSON, card)
    text = card_markdown(card).encode()
    atomic_write(out_dir / CARD_MD, lambda f: f.write(text))
    return card


def export_zip(run_dir: str | Path) -> bytes:
    """The export folder of the run as the bytes of a zip file (for a download), built in a temporary
    folder that is removed afterwards: nothing is left on disk."""
    with tempfile.TemporaryDirectory(prefix="chestmnist-export-") as tmp:
        out = Path(tmp) / Path(run_dir).name
        export_run(run_dir, out)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(out.iterdir()):
                z.write(f, f"{out.name}/{f.name}")
        return buffer.getvalue()
