"""`python -m bench [--quick | --tiny] [--only GROUP,...]`: every benchmark, a table, one JSON line.

Groups: pipeline, compute, autotune, memory, interaction, efficiency, stats, saliency, app_speed, export, effective, mutation, fuzz (in that order). Progress goes to
stderr; stdout gets the table (name, value, unit, baseline, ratio, ratio of best repeats, target,
pass/fail, note) and
ends with ONE JSON line: {"mode", "machine", "seconds", "summary", "figures": {name: {...}}}.
Every ratio compares against a baseline measured in the same run. The header and the JSON line's
"machine" name what the figures ran on (CPU model and its fp32/bf16-relevant flags, threads, GPU,
load): a ratio holds for the machine it was measured on.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

GROUPS = ("pipeline", "compute", "autotune", "memory", "interaction", "efficiency", "stats", "saliency", "app_speed",
          "export", "effective", "mutation", "fuzz")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        a = abs(v)
        return f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.4f}"
    return str(v)


def table(rows) -> str:
    head = ("name", "value", "unit", "baseline", "ratio", "ratio(best)", "target", "result", "note")
    body = []
    for r in rows:
        result = "PASS" if r.passed is True else "FAIL" if r.passed is False else "info"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        best = "-" if r.ratio_best is None else f"{r.ratio_best:.2f}x"
        body.append((r.name, _fmt(r.value), r.unit, _fmt(r.baseline), ratio, best, r.target or "-", result, r.note))
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head[:-1])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:-1], widths)) + "  " + head[-1]]
    lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    for b in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(b[:-1], widths)) + "  " + b[-1])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short version (under ~2 minutes on a 2-core CPU)")
    g.add_argument("--tiny", action="store_true", help="seconds-long smoke version for tests (figures meaningless)")
    p.add_argument("--only", default="", help=f"comma-separated groups among {', '.join(GROUPS)}")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one, removed at the end)")
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(GROUPS)
    bad = [x for x in only if x not in GROUPS]
    if bad:
        p.error(f"unknown group(s) {', '.join(bad)}; choose among {', '.join(GROUPS)}")

    import importlib
    import tempfile

    from bench.common import MODES, Context, Row, RunCache, machine, nih_available, NIH1000

    mode = MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="chestmnist-bench-")
        work = Path(tmp.name)
    os.environ.setdefault("CHESTMNIST_CACHE", str(work / "cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    ctx = Context(mode=mode, workdir=work, runs=RunCache(work), log=log,
                  nih=NIH1000 if nih_available() else None)
    info = machine()
    log(f"mode {mode.name}; {info['cpu']} ({' '.join(info['cpu_flags'])}); torch {info['torch']}, {info['cpus']} CPUs, {info['torch_threads']} threads, "
        f"load {info['loadavg']}; NIH-1000 {'found' if ctx.nih else 'not found (planted data instead)'}")
    rows: list[Row] = []
    seconds = {}
    try:
        for group in only:
            t = time.perf_counter()
            try:
                rows += importlib.import_module(f"bench.{group}").run(ctx)
            except Exception as e:  # one broken group must not hide the others' figures
                traceback.print_exc(file=sys.stderr)
                rows.append(Row(f"{group}.error", None, "", note=f"{type(e).__name__}: {str(e)[:300]}", passed=False))
            seconds[group] = round(time.perf_counter() - t, 1)
            log(f"{group} done in {seconds[group]:.0f} s")
    finally:
        if tmp is not None:
            tmp.cleanup()
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    seconds["total"] = round(time.perf_counter() - t_start, 1)

    print(f"ChestMNIST Resolution Explorer benchmarks ({mode.name}) - torch {info['torch']}, {info['cpus']} CPUs "
          f"({info['cpu']}; flags: {' '.join(info['cpu_flags']) or 'none of interest'}; torch CPU capability "
          f"{info['cpu_capability']}), {info['torch_threads']} torch threads, GPU: {info['gpu'] or 'no'}; "
          f"load average {info['loadavg'][0]} at start, {info['loadavg_end'][0]} at end; {seconds['total']:.0f} s")
    print(table(rows))
    summary = {"pass": sum(r.passed is True for r in rows), "fail": sum(r.passed is False for r in rows),
               "info": sum(r.passed is None for r in rows)}
    print(f"{summary['pass']} pass, {summary['fail']} fail, {summary['info']} informational")
    figures = {r.name: {k: v for k, v in r.as_dict().items() if k != "name"} for r in rows}
    print(json.dumps({"mode": mode.name, "machine": info, "seconds": seconds, "summary": summary, "figures": figures},
                     allow_nan=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
