"""Until decided: train the study in rounds, one seed at every size per round, until the resolution question is
decided, the budget would be exceeded, or the planned maximum of seeds is reached; then report.

After every round from the second the primary family is compared afresh on the seeds so far
(core.study.comparisons) and decided group-sequentially (core.study.sequential). Everything the rule
reads is saved: each round's look (the compared numbers), its verdicts and wall time, and the budget
spent, in study.json's ``sequential`` record; so the same command, rerun after a kill or a Stop, re-uses
the finished rounds and reaches the decision an uninterrupted study would.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from core.errors import UserError
from core.runs import process
from core.runs import record as runs
from core.study import sequential as Q
from core.study.common import StudyError, log
from core.study.comparisons import PRIMARY, compare, resolution_plan
from core.study.reading import StudyReport
from core.study.recipe import read_study_file, write_sequential
from core.study.report import build_report
from core.study.runner import Study, open_study, plan_grid, train_plan
from core.train import cost as E

DEFAULT_MAX_SEEDS = 10
_UNITS = {"h": 3600, "m": 60, "min": 60, "s": 1}


def parse_budget(text: str) -> float:
    """Seconds of a budget written like "3h", "50m", "1h30m", "90min" or "600s".

    >>> parse_budget("1h30m")
    5400.0
    """
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|h|m|s)", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(min|h|m|s)", "", text.strip().lower()).strip():
        raise StudyError(f"budget {text!r} is not a duration: write e.g. 3h, 50m, 1h30m or 600s")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds > 0:
        raise StudyError(f"budget {text!r} must be more than no time at all")
    return seconds


def _design(previous: dict | None, margin: float, max_seeds: int, budget_s: float | None, sizes: list[int],
            first_seed: int) -> dict[str, Any]:
    """The until-decided record to go on with: a new one, or the saved one when its design is the same (its
    boundaries depend on margin and max seeds, so changing them mid-study would void the error guarantee; its
    saved looks are of its sizes and seeds from its first, which a round of others could not extend)."""
    if max_seeds < 2:
        raise StudyError(f"--max-seeds must be at least 2 (a look needs 2 seeds per size), got {max_seeds}")
    saved = (previous or {}).get("sequential")
    design = {"margin": margin, "max_seeds": max_seeds, "alpha": Q.ALPHA, "sizes": sizes, "first_seed": first_seed}
    if saved:
        # A record from before sizes and first seed were kept is taken to have these.
        if any(saved.get(k, v) != v for k, v in design.items()):
            raise StudyError(f"this until-decided study was started with margin {saved['margin']:g}, max seeds "
                             f"{saved['max_seeds']}, sizes {saved.get('sizes', sizes)} and first seed "
                             f"{saved.get('first_seed', first_seed)}; its boundaries and saved looks depend on them. "
                             f"Rerun with those, or use another --out for a new study.")
        return saved | {"budget_s": budget_s, "sizes": sizes, "first_seed": first_seed}
    return design | {"budget_s": budget_s, "spent_s": 0.0, "partial_s": 0.0, "rounds": [], "outcome": None,
                     "state": "running", "pid": None}


def first_round_estimate(study: Study, seed: int, log: Callable[[str], None] = log) -> tuple[float, float] | None:
    """Projected seconds of one round (one run at every size), as busy as the machine is now and idle, from
    each size's speed measured now (core.train.cost.estimate); None when it cannot be measured. A shared
    machine's load swings 3-7x within minutes, so a round is only refused when even the idle end would not fit;
    the sizes, measured one after another at loads that differ, are each costed at the load of now."""
    busy = idle = 0.0
    now = E.load_per_cpu()
    for size in study.sizes:
        try:
            e = E.estimate(dataclasses.replace(study.base, size=size, seed=seed, name="estimate"))
        except (UserError, RuntimeError) as err:
            log(f"no cost estimate at {size} px: {err}")
            return None
        busy, idle = busy + e.total_seconds_at(now), idle + e.idle_total_seconds
    return busy, idle


def projected_round(rounds: list[dict], estimate: float | None) -> float | None:
    """Seconds the next round is expected to take: the mean measured wall time of the rounds that trained
    runs so far, else the estimate."""
    walls = [r["wall_s"] for r in rounds if r.get("trained") and r.get("wall_s")]
    return sum(walls) / len(walls) if walls else estimate


def _look(study: Study, seeds: list[int], n_boot: int, margin: float) -> dict[str, Any]:
    """Compare every size's first len(seeds) seeds with the reference's (the primary family)."""
    entries = read_study_file(study.out_dir)["runs"]
    members = {("r", s): [e["run_dir"] for e in entries if e["size"] == s and e["seed"] in seeds]
               for s in study.sizes}
    # compare's fixed-sample verdicts are not used: the rule (core.study.sequential) decides on delta, se and df
    primary = [c for c in resolution_plan(list(members)) if c["family"] == PRIMARY]  # the rule decides only these
    rows = compare(primary, members, {k: f"{k[1]} px" for k in members}, n_boot=n_boot, margin=margin)
    return Q.look(rows, len(seeds))


def _announce(study: Study, seq: dict, estimate: float | None, log: Callable[[str], None],
              idle: float | None = None) -> None:
    budget, left = seq["budget_s"], seq["max_seeds"] - len(seq["rounds"])
    if estimate is None:
        log(f"until decided: up to {left} more round(s); the first round's time is not known yet")
        return
    fits = left if budget is None else min(left, int(max(budget - seq["spent_s"], 0) // estimate))
    log(f"until decided: a round (one seed at {', '.join(map(str, study.sizes))} px) is projected at "
        f"{E.format_seconds(estimate)}"
        + (f" ({E.format_seconds(idle)} on an idle machine: measured while it was busy)"
           if idle is not None and idle < 0.9 * estimate else "")
        + "; " + (f"the budget {E.format_seconds(budget)} ({E.format_seconds(seq['spent_s'])}"
                                            f" spent) likely fits {fits} more round(s)" if budget else
                                            f"no budget: up to {left} more round(s)")
        + f" of at most {seq['max_seeds']} seeds per size")


def _stop_on_sigterm(*_: Any) -> None:
    raise KeyboardInterrupt  # the app's Stop between runs; during a run train_child turns it into the run's STOP


def run_until_decided(base: Any, sizes: Iterable[int], *, margin: float, max_seeds: int = DEFAULT_MAX_SEEDS,
                      budget_s: float | None = None, first_seed: int = 0, name: str | None = None,
                      out_dir: str | Path | None = None, skip_missing: bool = False, nproc_per_node: int = 1,
                      isolate: bool = True, command: list[str] | None = None, n_boot: int = 2000,
                      inference_images: int = 512, log: Callable[[str], None] = log,
                      **verdicts: Any) -> StudyReport:
    """Train `base` (a TrainConfig) round by round until decided (module docstring); the report, whose
    ``sequential`` section says each size's verdict, the rounds and why it stopped.

    Raises StudyError when not even the first round fits `budget_s`, StudyStopped when a run is stopped,
    KeyboardInterrupt on Ctrl-C or SIGTERM between runs; each leaves study.json so the same call resumes.
    """
    study = open_study(base, sizes, name, out_dir, skip_missing=skip_missing, log=log)
    # One process per study folder: a second (Start clicked twice, a command beside the app) would write the same
    # study.json and wait on the same runs' locks; it is refused before it writes anything.
    study.out_dir.mkdir(parents=True, exist_ok=True)
    with runs.training_lock(study.out_dir, busy=f"{study.out_dir} is already running an until-decided study in another "
                            "process; stop that one, or give another --out for a new study."):
        if not math.isfinite(margin) or margin <= 0:
            raise StudyError(f"--margin must be positive, got {margin}")
        seq = _design(read_study_file(study.out_dir), margin, max_seeds, budget_s, sorted(study.sizes), first_seed)
        measured = projected_round(seq["rounds"], None)
        first = None if measured is not None else first_round_estimate(study, first_seed, log)
        estimate = measured if measured is not None else (first[0] if first else None)
        _announce(study, seq, estimate, log, idle=first[1] if first else None)
        if not seq["rounds"] and budget_s is not None and first is not None and first[1] > budget_s:
            raise StudyError(f"the first round is projected at {E.format_seconds(first[1])} even on an idle machine, "
                             f"more than the budget "
                             f"{E.format_seconds(budget_s)}: give a larger --budget")
        plan_grid(study, [first_seed], nproc_per_node, command, lambda m: None)  # study.json exists from here on
        seq |= {"state": "running", "pid": os.getpid(), "started": process.start_time(os.getpid()), "stop": None}
        write_sequential(study.out_dir, seq)
        previous_handler = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        started = None
        try:
            stop = _rounds(study, seq, estimate, first_seed, nproc_per_node, isolate, command, n_boot, log)
            seq |= {"state": "finished", "outcome": Q.outcome(seq["rounds"], stop)}
        except BaseException:
            seq["state"] = "stopped"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            started = seq.pop("_round_started", None)
            if started is not None:  # a round cut short: its time is spent all the same
                seq["partial_s"] += time.time() - started
                seq["spent_s"] += time.time() - started
            write_sequential(study.out_dir, seq)
        log(f"until decided: stopped ({seq['outcome']['stop']}): " + "; ".join(
            f"{c['a']} {c['verdict']}" for c in seq["outcome"]["comparisons"]))
        done = [e["run_dir"] for e in read_study_file(study.out_dir)["runs"]
                if e["seed"] in seq["rounds"][-1]["seeds"] and e["size"] in study.sizes]
        return build_report(done, study.out_dir, device=study.base.device, study_name=study.name, command=command,
                            inference_images=inference_images, sequential=seq, **({"margin": margin} | verdicts))


def _rounds(study: Study, seq: dict, estimate: float | None, first_seed: int, nproc_per_node: int, isolate: bool,
            command: list[str] | None, n_boot: int, log: Callable[[str], None]) -> str:
    """Play the rounds (re-using the saved ones); the stop reason."""
    looks = [r["look"] for r in seq["rounds"] if r.get("look")]
    for n in range(1, seq["max_seeds"] + 1):
        seeds = list(range(first_seed, first_seed + n))
        if n <= len(seq["rounds"]):  # the same seeds: _design refuses a study resumed from another first seed
            record = seq["rounds"][n - 1]
        else:
            projected = projected_round(seq["rounds"], estimate)
            budget = seq["budget_s"]
            if seq["rounds"] and budget is not None and projected is not None and seq["spent_s"] + projected > budget:
                log(f"round {n} would take about {E.format_seconds(projected)}; "
                    f"{E.format_seconds(budget - seq['spent_s'])} of the budget is left")
                return "budget"
            seq["_round_started"] = time.time()
            plan = plan_grid(study, [seeds[-1]], nproc_per_node, command, log)
            trained = sum(p.state != "finished" for p in plan)
            failed = train_plan(study, plan, nproc_per_node, isolate, log)
            if failed:
                raise StudyError(f"round {n} failed at " + ", ".join(f"{p.size} px seed {p.seed}" for p in failed)
                                 + "; see each run's log, then run the same command again")
            wall = time.time() - seq.pop("_round_started") + seq["partial_s"]
            seq["spent_s"] += wall - seq["partial_s"]
            seq["partial_s"] = 0.0
            if n >= 2:
                looks.append(_look(study, seeds, n_boot, seq["margin"]))
            record = Q.round_record(n, seeds, looks, seq["margin"], seq["max_seeds"], wall) | {"trained": trained}
            seq["rounds"] = seq["rounds"][:n - 1] + [record]
            write_sequential(study.out_dir, seq)
        if record.get("verdicts"):
            log(f"round {n} ({n} seeds per size): " + "; ".join(
                f"{c['a']} {v}" for c, v in zip(record["look"]["comparisons"], record["verdicts"])))
            if Q.UNDECIDED not in record["verdicts"]:
                return "decided"
    return "max-seeds"
