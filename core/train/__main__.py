"""Train a multi-label CNN on ChestMNIST at one resolution, one run folder per run: core.train.loop's command line.

    python -m core.train --size 28 --epochs 30
    python -m core.train --size 64 --subset 300 --epochs 5 --data-root demo
    python -m core.train --resume checkpoints/<run-id>
    torchrun --nproc_per_node=2 -m core.train --size 28 --epochs 2     # DDP: gloo on CPU, NCCL on GPU
"""
from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

import torch.distributed as dist

from core.errors import UserError
from core import env
from core.data import chestmnist as D
from core.runs import record as runs
from core.train.device import describe_devices
from core.train.cost import estimate, format_seconds
from core.train.loop import rank_and_world, prepare_run, print_epoch, print_progress, train
from core.train.recipe import TrainConfig, add_arguments


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p, [f.name for f in dataclasses.fields(TrainConfig)],
                  data_root="; with --resume: where the run's data file moved (used when its MD5 matches)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted or stopped run")
    p.add_argument("--run-dirs", nargs="+", metavar="RUN_DIR",
                   help="train prepared (queued) run folders one after another (used by the app's queue)")
    p.add_argument("--estimate", action="store_true", help="only print the measured time per epoch and in all (with "
                   "the final scoring of val and test), for the data file's split sizes (official ChestMNIST's "
                   "without one), and exit")
    p.epilog = "--device check prints what accelerators torch sees."
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.device == "check":
        print(describe_devices(TrainConfig(size=args.size, model=args.model, batch_size=args.batch_size)))
        return 0
    # SIGTERM (kill, the app's Stop fallback) stops like Ctrl-C: status 'stopped', resumable.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Under torchrun only rank 0 reports: it alone writes the test metrics (after the other ranks
    # are done), and every line would otherwise appear once per rank.
    lead = env.rank() == 0
    # Batch-level progress redraws one line, which only makes sense on a terminal; logs get epochs.
    live = lead and sys.stderr.isatty()
    try:
        if args.resume or args.run_dirs:
            targets = [Path(p) for p in (args.run_dirs or [args.resume])]
            for run_dir in targets:
                if args.run_dirs and not runs.is_run_dir(run_dir):  # deleted while queued: skipped below
                    continue
                if not runs.is_run_dir(run_dir):
                    raise runs.RunError(f"{run_dir} is not a run folder (no run config); pass a folder under the runs dir.")
                status = runs.read_status(run_dir)
                if status.get("state") == "running":
                    raise runs.RunError(f"{run_dir} is already being trained by process {status.get('pid')}.")
            if lead:
                # Runs waiting in this queue carry this process's pid, so a dead queue shows as interrupted.
                for run_dir in targets[1:]:
                    runs.set_status(run_dir, "queued")
        else:
            fields = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
            fields = {k: v for k, v in fields.items() if v is not None}
            config = TrainConfig(**fields)
            if args.estimate:
                e = estimate(config)
                path = D.npz_path(config.data_root, config.size)
                where = path if path.is_file() else f"official ChestMNIST (no {path.name} in {config.data_root})"
                print(f"{e.images_per_s:,.0f} train img/s on {e.device}: about {format_seconds(e.seconds_per_epoch)} "
                      f"per epoch, {format_seconds(e.total_seconds)} for {config.epochs} epochs and the final scoring "
                      f"of val and test ({format_seconds(e.final_seconds)}); {e.n_train:,} train, {e.n_val:,} val and "
                      f"{e.n_test:,} test images: {where}")
                return 0
            rank, world = rank_and_world()
            # Under torchrun, rank 0 creates the folder and tells the others where it is.
            box = [str(prepare_run(config)) if rank == 0 else None]
            if world > 1:
                dist.broadcast_object_list(box, src=0)
            targets = [Path(box[0])]
        for run_dir in targets:
            if args.run_dirs and not runs.is_run_dir(run_dir):  # deleted while it waited in the queue: train the rest
                if lead:
                    print(f"skipped {run_dir}: it was deleted while queued", file=sys.stderr)
                continue
            if lead:
                print(f"run folder: {run_dir}", file=sys.stderr)
            state = train(run_dir, print_progress if live else None, print_epoch if lead else None,
                          data_root=args.data_root if args.resume else None)
            if state != "finished":
                if lead:
                    print(f"\nrun {state}: resume with `python -m core.train --resume {run_dir}`", file=sys.stderr)
                    print(run_dir.resolve())
                return 1
            if lead:
                m = runs.read_test_metrics(run_dir)
                # AUC is undefined (None) on a test split without both classes of some finding.
                auc, acc = (f"{v:.4f}" if isinstance(v, float) else "undefined" for v in (m.get("auc"), m.get("acc")))
                print(f"test AUC (medmnist) {auc}   test ACC (medmnist, 0.5) {acc}", file=sys.stderr)
        if lead:
            print(targets[-1].resolve())
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C before training started (a run being set up is removed)
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
