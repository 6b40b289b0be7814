"""An until-decided study in a background process, for the app: its command, launch, state, stop and resume.

The process is the study's own command line (`python -m core.study ... --until-decided`), detached
so it outlives the app's reruns, logging to `until.log` in the report folder. Its state is what
core.study.until keeps in study.json (rounds, verdicts, pid), read here; Stop sends it SIGTERM, which
core.study.runner turns into the running run's STOP (it stops after its batch, resumable) and
core.study.until into a stop between runs; Resume reruns the saved command.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Iterable

from core.runs import process
from core.study.common import DEFAULT_REPORTS_DIR
from core.study.recipe import KNOBS, default_name, read_study_file, slug
from core.train.background import detached
from core.train.recipe import TrainConfig, flag

LOG = "until.log"


def report_dir(config: TrainConfig) -> Path:
    """Where the app's until-decided study of `config` writes: reports/<its name, else the study's default name>."""
    return (DEFAULT_REPORTS_DIR / (slug(config.name) or default_name(config))).resolve()


def study_command(config: TrainConfig, sizes: Iterable[int], margin: float, max_seeds: int,
                  budget_s: float | None, out_dir: Path) -> list[str]:
    """`python -m core.study` arguments that run `config` at `sizes` until decided (seeds from config.seed)."""
    defaults = TrainConfig()
    args = ["--sizes", *map(str, sorted(sizes)), "--until-decided", "--margin", f"{margin:g}",
            "--max-seeds", str(max_seeds), "--seed", str(config.seed), "--out", str(out_dir)]
    if config.name:
        args += ["--name", config.name]
    if budget_s is not None:
        args += ["--budget", f"{int(round(budget_s))}s"]
    for name in KNOBS:
        value, default = getattr(config, name), getattr(defaults, name)
        if isinstance(default, bool):
            if value != default:
                args.append(flag(name) if value else flag(name).replace("--", "--no-", 1))
        elif value is not None:
            args += [flag(name), str(value)]
    return ["python", "-m", "core.study", *args]


def launch(command: list[str], out_dir: Path) -> int:
    """Run a saved `python -m core.study ...` command in a detached process logging to out_dir/until.log; its pid."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return detached(command[1:], out_dir / LOG)


def state(out_dir: Path) -> dict[str, Any] | None:
    """The until-decided record of study.json (core.study.until) with ``alive`` (its process runs) and
    ``command``; None when the folder holds no until-decided study."""
    study = read_study_file(out_dir)
    seq = (study or {}).get("sequential")
    if not seq:
        return None
    # With its start time, so a pid reused after the study died (a SIGKILL, a reboot) is not taken for it and sent Stop.
    pid, started = seq.get("pid"), seq.get("started")
    alive = (seq.get("state") == "running" and isinstance(pid, int) and not isinstance(pid, bool)
             and process.alive(pid, started if isinstance(started, int) else None))
    return seq | {"alive": alive, "command": study.get("command")}


def stop(out_dir: Path) -> bool:
    """Ask the study's process to stop (SIGTERM); False when it is not running."""
    seq = state(out_dir)
    if not seq or not seq["alive"]:
        return False
    os.kill(seq["pid"], signal.SIGTERM)
    return True


def log_tail(out_dir: Path, lines: int = 8) -> str:
    """The last lines of the background study's log ("" when there is none)."""
    try:
        return "\n".join((Path(out_dir) / LOG).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
