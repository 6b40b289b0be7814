"""`python -m core.study`: the command line over run_study / rebuild_report (see core/study/__init__.py)."""
from __future__ import annotations

import argparse
import sys
import time

from core.errors import UserError
from core import env
from core.data import chestmnist as D
from core.train.recipe import TrainConfig, add_arguments
from core.study.comparisons import DEFAULT_MARGIN
from core.train.cost import format_seconds
from core.study.common import StudyError, StudyStopped, log
from core.study.reading import StudyReport
from core.study.recipe import KNOBS
from core.study.report import build_report, finished_runs, rebuild_report
from core.study.runner import run_study, train_one_main
from core.study.until import DEFAULT_MAX_SEEDS, parse_budget, run_until_decided

DESCRIPTION = "The resolution trade-off study: one recipe at several image sizes and seeds, one report."

RECIPE = KNOBS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.study", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(D.SIZES), help=f"image sizes, from {D.SIZES}")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds per size (seeds --seed, --seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--subsets", type=float, nargs="+", default=None, metavar="FRACTION",
                   help="images or pixels: also train every size and seed on these fractions of the training split, "
                        "in (0, 1], e.g. 0.25 0.5 1.0 (for a seed the same images at every size, a smaller subset "
                        "inside a larger); the report adds test AUC against training compute")
    add_arguments(p, RECIPE)
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
    p.add_argument("--effective", action="store_true",
                   help="add the largest size's effective-resolution curve and which findings gain from resolution")
    p.add_argument("--ensembles", action="store_true",
                   help="add multi-scale ensembles (one run per size) against as many models at the best size")
    p.add_argument("--equivalence", action="store_true",
                   help="also test equivalence (TOST) of each size to the largest within ±margin")
    p.add_argument("--until-decided", action="store_true",
                   help="train in rounds, one seed at every size per round, until every size is decided against "
                        "the largest (superior, non-inferior or inferior at --margin; group-sequential, "
                        "docs/study.md), the budget would be exceeded, or --max-seeds is reached")
    p.add_argument("--budget", type=_budget, default=None, metavar="DURATION",
                   help="with --until-decided (implied): wall time for all rounds, e.g. 3h, 50m, 1h30m; no round "
                        "is started that the measured cost of the rounds so far says would not fit")
    p.add_argument("--max-seeds", type=int, default=None,
                   help=f"with --until-decided: the planned most seeds per size (default {DEFAULT_MAX_SEEDS}); the "
                        "sequential boundaries are spread over looks after 2..max-seeds seeds")
    return p


def _budget(text: str) -> float:
    try:
        return parse_budget(text)
    except StudyError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _until_decided_error(args: argparse.Namespace) -> str | None:
    """Why the until-decided options cannot go together as given; None when they can."""
    if not (args.until_decided or args.budget is not None or args.max_seeds is not None):
        return None
    if args.report_only or args.runs:
        return "--until-decided, --budget and --max-seeds train a study: leave out --report-only and --runs"
    if args.seeds != 1:
        return "--until-decided adds seeds until decided: give --max-seeds instead of --seeds"
    if args.subsets is not None:
        return ("--until-decided decides sizes on all the training images; run an images-or-pixels grid "
                "(--subsets) as a study of its own")
    if args.max_seeds is not None and args.max_seeds < 2:
        return f"--max-seeds must be at least 2 (a look needs 2 seeds per size), got {args.max_seeds}"
    if args.correction != "holm":
        # The stop rule is Holm's; a BH table in the same report would read as the decision's correction.
        return ("--until-decided stops on Holm made group-sequential (the family-wise error stays at 5% over every "
                "look); Benjamini-Hochberg has no group-sequential form here: leave out --correction bh")
    return None


def _train(args: argparse.Namespace, command: list[str], verdicts: dict) -> StudyReport:
    """Run the study the arguments ask for: the fixed grid of --seeds, or round by round until decided."""
    base = TrainConfig(**{k: v for k in RECIPE if (v := getattr(args, k)) is not None})
    common = {"name": args.name, "out_dir": args.out, "skip_missing": args.skip_missing,
              "nproc_per_node": args.nproc_per_node, "command": command, **verdicts}
    if args.until_decided or args.budget is not None or args.max_seeds is not None:
        return run_until_decided(base, args.sizes, max_seeds=args.max_seeds or DEFAULT_MAX_SEEDS,
                                 budget_s=args.budget, first_seed=args.seed, **common)
    return run_study(base, args.sizes, range(args.seed, args.seed + args.seeds), subsets=args.subsets, **common)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_train-one"]:
        return train_one_main(argv[1:])
    args = _parser().parse_args(argv)
    if env.world_size() > 1:
        print("error: run `python -m core.study` itself without torchrun; --nproc-per-node N launches each run "
              "under torchrun.", file=sys.stderr)
        return 2
    if not args.margin > 0:
        print(f"error: --margin must be positive, got {args.margin}", file=sys.stderr)
        return 2
    if problem := _until_decided_error(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    verdicts = {"margin": args.margin, "correction": args.correction, "equivalence": args.equivalence,
                "effective": args.effective, "ensembles": args.ensembles}
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
            t0 = time.time()
            report = _train(args, ["python", "-m", "core.study", *argv], verdicts)
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
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

