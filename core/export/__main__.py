"""`python -m core.export RUN --out DIR`: a run's best model as ONNX, its thresholds and a model card.

    python -m core.export checkpoints/<run-id> --out exported/     # DIR must be new or empty

Writes DIR/model.onnx, the thresholds in effect (named as a run folder names its thresholds file),
DIR/MODEL_CARD.md and DIR/model_card.json (core.export.folder).
"""
from __future__ import annotations

import argparse
import sys

from core.errors import UserError
from core.export.folder import LATENCY_BATCH, export_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.export",
                                description="Export a run's best model as ONNX with its thresholds and a model card.")
    p.add_argument("run_dir", help="a finished (evaluated) run folder")
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder outside the run folder")
    p.add_argument("--latency-images", type=int, default=LATENCY_BATCH,
                   help=f"random images timed for the card's latency (default {LATENCY_BATCH})")
    args = p.parse_args(argv)
    if args.latency_images < 1:
        print("error: --latency-images must be at least 1", file=sys.stderr)
        return 2
    try:
        card = export_run(args.run_dir, args.out, args.latency_images)
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cost = card["cost"]
    print(f"exported in {cost['export_s']:.1f} s; onnxruntime {cost['onnx_ms_per_image']:.3f} ms/image, torch "
          f"{cost['torch_ms_per_image']:.3f} ms/image; max |onnx - torch| {cost['onnx_vs_torch_max_abs_diff']:.1e}")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
