"""`python -m core.evaluate`: (re)score a run's best checkpoint on its own data, export medmnist's CSV, or
score other data into a folder of its own.

    python -m core.evaluate checkpoints/<run-id> [--data-root MOVED_TO] [--device auto]
    python -m core.evaluate checkpoints/<run-id> --export-csv DIR          # the saved test scores, as medmnist's CSV
    python -m core.evaluate checkpoints/<run-id> --other-data ROOT --out NEW_DIR
    python -m core.evaluate checkpoints/<run-id> --effective-sizes 16 28 40 [--json]   # effective resolution
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.data import chestmnist as D
from core.evaluate.effective import GRID, effective_curve
from core.files import to_jsonable
from core.evaluate.scoring import evaluate_other, evaluate_run, export_evaluator_csv
from core.runs import record as runs
from core.runs.record import RunError


def _fmt(x: float | None) -> str:
    return "undefined" if x is None or not np.isfinite(x) else f"{x:.4f}"


def report(result: dict) -> None:
    print(f"test AUC (medmnist) {_fmt(result['auc'])}   test ACC (medmnist, 0.5) {_fmt(result['acc'])}   "
          f"macro-F1 (val-tuned thresholds) {_fmt(result['macro_f1'])}")
    if result.get("auc") is None:
        print("The test split has no finding with both positive and negative images, so no AUC is defined; "
              "a test split with positives and negatives of some finding is needed for one.")
    elif result.get("auc_undefined_classes"):
        print(f"AUC undefined (no positives or negatives in test): {result['auc_undefined_classes']}")


def check_export_dir(out_dir: Path) -> None:
    """RunError when the CSV cannot be written into `out_dir` (a file, or a folder this user cannot write)."""
    target = next((p for p in (out_dir, *out_dir.parents) if p.exists()), Path("/"))
    if not target.is_dir():
        raise RunError(f"--export-csv {out_dir}: {target} is a file, not a folder. Give a folder for the CSV.")
    if not os.access(target, os.W_OK | os.X_OK):
        raise RunError(f"--export-csv {out_dir}: {target} cannot be written by this user. Give a writable folder.")


def print_effective(points: list[dict], as_json: bool) -> None:
    """One line (or JSON object) per effective size; the data root's own file at that size nested as from_file."""
    by_size: dict[int, dict] = {}
    for pt in points:
        row = {k: pt[k] for k in ("effective_size", "native_size", "auc", "native_auc", "delta", "ci", "p_value", "per_class")}
        row["classes_excluded"] = pt["comparison"].get("classes_excluded")
        if pt["source"] == "resampled":
            by_size.setdefault(pt["effective_size"], {}).update(row)
        else:
            by_size.setdefault(pt["effective_size"], {"effective_size": pt["effective_size"]})["from_file"] = row
    if not by_size:
        print("No effective size below the run's own was asked for.", file=sys.stderr)
    for r, row in sorted(by_size.items()):
        if as_json:
            print(json.dumps(to_jsonable(row)))
            continue
        for label, pt in (("resampled", row), ("its own file", row.get("from_file"))):
            if pt and "auc" in pt:
                lo, hi = pt["ci"]
                print(f"{r:>4} px ({label}): test AUC (medmnist) {_fmt(pt['auc'])}, {_fmt(pt['delta'])} against "
                      f"{pt['native_size']} px [{_fmt(lo)}, {_fmt(hi)}], p = {_fmt(pt['p_value'])}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.evaluate",
                                description="(Re)evaluate a run's best checkpoint on val and test of its own data.")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--data-root", type=D.data_root_arg, default=None,
                   help="where the run's data file moved (used when its MD5 matches the run's)")
    p.add_argument("--export-csv", metavar="DIR", help="only write the saved test scores in medmnist Evaluator CSV "
                                                       "format (evaluates first only when the run has none)")
    p.add_argument("--other-data", metavar="ROOT", help="score the test split of other data (needs --out)")
    p.add_argument("--out", metavar="NEW_DIR", help="with --other-data: a new or empty folder for those results")
    p.add_argument("--effective-sizes", type=int, nargs="+", metavar="R",
                   help="score the test images brought down to R px and back up to the run's size (and the data "
                        "root's R px file where it holds the same images), paired against the run's own scores "
                        f"(sizes below the run's; e.g. {' '.join(map(str, GRID))})")
    p.add_argument("--json", action="store_true", help="with --effective-sizes: one JSON object per effective size")
    args = p.parse_args(argv)
    try:
        if args.effective_sizes:
            print_effective(effective_curve([args.run_dir], args.effective_sizes, device=args.device,
                                            data_root=args.data_root), args.json)
            return 0
        if args.other_data:
            if not args.out:
                raise RunError("--other-data needs --out NEW_DIR: results on other data go into a folder of their own.")
            report(evaluate_other(args.run_dir, D.resolve_root(args.other_data), args.out, args.device))
            print(Path(args.out).resolve())
            return 0
        if args.export_csv:
            check_export_dir(Path(args.export_csv).expanduser())
        if not (args.export_csv and runs.has_scores(args.run_dir, "test")):
            report(evaluate_run(args.run_dir, args.device, data_root=args.data_root))
        if args.export_csv:
            print(export_evaluator_csv(args.run_dir, args.export_csv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(Path(args.run_dir).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
