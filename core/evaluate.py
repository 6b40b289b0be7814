"""Score splits with a run's best model, choose thresholds on validation, report on test.

    python -m core.evaluate checkpoints/<run-id> [--export-csv DIR] [--device auto]
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import autotune
from core import data as D
from core import metrics, runs, thresholds
from core.device import resolve_device
from core.models import fold_batchnorm
from core.runs import RunError, load_model, load_scores, read_config, save_scores


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu",
            channels_last: bool | None = None, fold_bn: bool | None = None) -> np.ndarray:
    """Sigmoid probabilities (N, 14) float32 for uint8 images (N, H, W), from `model` in eval mode.

    `channels_last` / `fold_bn` left as None are what was measured fastest for this model, size and
    batch on this machine (core.autotune.choose_infer; folding batch norm into the convolutions gives
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
        x = D.to_tensor(images[start:start + batch_size], device, channels_last)
        # fp32 always: bf16 rounding reorders nearly tied scores, and these are the scores metrics are computed on.
        out[start:start + len(x)] = torch.sigmoid(net(x).float()).cpu().numpy()
    return out


def evaluate_run(run_dir: str | Path, device: str = "auto", data: D.ChestData | None = None,
                 model: torch.nn.Module | None = None) -> dict:
    """Score val and test with the best checkpoint and write the run's evaluation files.

    Writes the val and test scores, the thresholds (Youden's J on validation, the study's ROC
    choice) and the test metrics (medmnist AUC/ACC with bootstrap CIs, F1 and friends at the
    validation-chosen thresholds) into the run folder through core.runs. Returns the test metrics dict.
    """
    run_dir = Path(run_dir)
    train = read_config(run_dir)["train"]
    dev = resolve_device(device)
    data = data or D.load(train["data_root"], train["size"])
    model = model or load_model(run_dir, "best", dev)
    choice = autotune.choose_infer(model, train["size"], 256, dev)
    net = fold_batchnorm(model) if choice.fold_bn else copy.deepcopy(model).eval()  # once for both splits
    scores = {s: predict(net, data.split(s).images, device=dev, channels_last=choice.channels_last, fold_bn=False)
              for s in ("val", "test")}
    for s in scores:
        save_scores(run_dir, s, scores[s], data.split(s).labels)
    choice = thresholds.choose("youden", data.val.labels, scores["val"])
    thresholds.save_thresholds(runs.thresholds_path(run_dir), choice, D.CLASS_NAMES)
    result = metrics.summarize(data.test.labels, scores["test"], choice.thresholds, D.CLASS_NAMES)
    result.update(split="test", thresholds_from="val", threshold_method=choice.method,
                  data_root=str(data.root), data_file=data.path.name)
    runs.write_test_metrics(run_dir, result)
    return result


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.evaluate",
                                description="(Re)evaluate a run's best checkpoint on val and test.")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--export-csv", metavar="DIR", help="also write test scores in medmnist Evaluator CSV format")
    args = p.parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.device)
        print(f"test AUC (medmnist) {result['auc']:.4f}   test ACC (medmnist, 0.5) {result['acc']:.4f}   "
              f"macro-F1 (val-tuned thresholds) {result['macro_f1']:.4f}")
        if result.get("auc_undefined_classes"):
            print(f"AUC undefined (no positives or negatives in test): {result['auc_undefined_classes']}")
        if args.export_csv:
            print(export_evaluator_csv(args.run_dir, args.export_csv))
    except (RunError, D.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(Path(args.run_dir).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
