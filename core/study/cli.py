"""`python -m core.study`: the command line over run_study / rebuild_report (see core/study/__init__.py)."""
from __future__ import annotations

import argparse
import os
import sys
import time

from core.data import chestmnist as D
from core.runs import record as runs
from core.train.recipe import AMP_HELP, SCHEDULES, ConfigError, TrainConfig
from core.study.comparisons import DEFAULT_MARGIN
from core.train.cost import format_seconds
from core.study.common import StudyError, StudyStopped, log
from core.study.report import build_report, finished_runs, rebuild_report
from core.study.runner import run_study, train_one_main

DESCRIPTION = "The resolution trade-off study: one recipe at several image sizes and seeds, one report."


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m core.study", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(D.SIZES), help=f"image sizes, from {D.SIZES}")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seeds", type=int, default=1, help="number of seeds per size (seeds --seed, --seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--model", default=d.model)
    p.add_argument("--subset", type=int, default=None, help="seeded random subset of train (val/test stay whole)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="> 0 trains with AdamW's decoupled decay")
    p.add_argument("--schedule", default=d.schedule, help=f"learning rate over the epochs: {', '.join(SCHEDULES)}")
    p.add_argument("--patience", type=int, default=d.patience, help="0 = no early stopping")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, mps")
    p.add_argument("--amp", default=d.amp, help=AMP_HELP)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--data-root", type=D.data_root_arg, default=None, help=D.DATA_ROOT_HELP)
    p.add_argument("--runs-dir", default=None, help="default: $CHESTMNIST_RUNS, else checkpoints/")
    p.add_argument("--name", default=None, help="study name (default: data folder, model, epochs and a recipe hash)")
    p.add_argument("--out", default=None, help="report folder (default: reports/<name>/)")
    p.add_argument("--skip-missing", action="store_true", help="leave out sizes whose npz is not in the data root")
    p.add_argument("--nproc-per-node", type=int, default=1,
                   help="train each run with torchrun on this many processes (DDP: one per GPU)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report of --out from its study.json")
    p.add_argument("--runs", nargs="+", default=None, metavar="PATH",
                   help="with --report-only: build one report in --out from these run folders (or folders of run "
                        "folders), e.g. several models' studies; runs are grouped by model/recipe and size")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help="non-inferiority margin in AUC of each size against the largest")
    p.add_argument("--correction", choices=("holm", "bh"), default="holm",
                   help="p adjustment within each family of comparisons: Holm or Benjamini-Hochberg")
    p.add_argument("--equivalence", action="store_true",
                   help="also test equivalence (TOST) of each size to the largest within ±margin")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_train-one"]:
        return train_one_main(argv[1:])
    args = _parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print("error: run `python -m core.study` itself without torchrun; --nproc-per-node N launches each run "
              "under torchrun.", file=sys.stderr)
        return 2
    if not args.margin > 0:
        print(f"error: --margin must be positive, got {args.margin}", file=sys.stderr)
        return 2
    verdicts = {"margin": args.margin, "correction": args.correction, "equivalence": args.equivalence}
    try:
        if args.runs and not args.report_only:
            raise StudyError("--runs builds a report from finished runs: use it with --report-only --out REPORT_DIR.")
        if args.report_only:
            if not args.out:
                raise StudyError("--report-only needs --out REPORT_DIR (the folder with study.json).")
            report = (build_report(finished_runs(args.runs), args.out, device=args.device,
                                   command=["python", "-m", "core.study", *argv], **verdicts) if args.runs
                      else rebuild_report(args.out, args.device, **verdicts))
        else:
            base = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, model=args.model,
                               weight_decay=args.weight_decay, schedule=args.schedule,
                               patience=args.patience, subset=args.subset, augment=args.augment, device=args.device,
                               amp=args.amp, channels_last=args.channels_last,
                               **({"data_root": args.data_root} if args.data_root else {}),
                               **({"runs_dir": args.runs_dir} if args.runs_dir else {}))
            t0 = time.time()
            report = run_study(base, args.sizes, range(args.seed, args.seed + args.seeds), args.name, args.out,
                               skip_missing=args.skip_missing, nproc_per_node=args.nproc_per_node,
                               command=["python", "-m", "core.study", *argv], **verdicts)
            log(f"done in {format_seconds(time.time() - t0)}")
        if report.data_warning:
            log(report.data_warning)
        for title, table in report.tables().items():
            print(f"\n{title}\n{table.to_string(index=False)}", file=sys.stderr)
        print((report.report_dir / "report.md").resolve())
        return 1 if report.summary["failed_runs"] else 0
    except StudyStopped as e:
        print(f"\nstopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue the study (finished runs are kept).",
              file=sys.stderr)
        return 130
    except (StudyError, ConfigError, D.DataError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

