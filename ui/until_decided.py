"""The Train page's "Until decided": the study's seeds added in rounds in a background process, until every size
is decided against the largest at a margin, within a budget (core.study.until); its rounds shown live."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.errors import UserError
from core.runs import folder as runs_folder
from core.runs import process
from core.study import launch as L
from core.train import recipe as C
from core.train.cost import format_seconds


def until_decided(cfg: C.TrainConfig, present: list[int]) -> None:
    """Margin, budget and max seeds, a Start button, and the study's rounds as they arrive."""
    with st.expander("Until decided: add seeds at every size until each is decided against the largest"):
        if len(present) < 2:
            st.caption("It takes two sizes or more under the data root: a size is compared with the largest.")
            return
        try:
            out_dir = L.report_dir(cfg)
        except (UserError, ValueError) as e:
            st.error(f"{e}")
            return
        left, mid, right = st.columns(3)
        margin = left.number_input("Margin (AUC a size may lose)", 0.001, 0.5, 0.02, 0.005, format="%.3f",
                                   key="until_margin")
        budget_min = mid.number_input("Budget (minutes, 0 = none)", 0, 100_000, 60, 10, key="until_budget")
        max_seeds = right.number_input("Most seeds per size", 2, 100, 10, 1, key="until_max_seeds")
        st.caption(f"Sizes {', '.join(map(str, present))} px against {max(present)} px, one seed at each per round; "
                   "it stops when every size is superior, non-inferior or inferior at the margin (group-sequential, "
                   "so stopping early keeps each claim's error near 5%; docs/study.md gives the measured rates), "
                   f"when the budget would run out, or at the most seeds. Report: {out_dir}")
        seq = L.state(out_dir)
        if st.button(f"Until decided ({', '.join(map(str, present))} px)", key="until_go",
                     disabled=bool(seq and seq["alive"]) or _launched(out_dir) is not None):
            _start(cfg, present, margin, budget_min, max_seeds, out_dir)
        rounds(str(out_dir))


def _start(cfg: C.TrainConfig, present: list[int], margin: float, budget_min: float, max_seeds: int,
           out_dir: Path) -> None:
    try:
        runs_folder.check_runs_dir(cfg.runs_dir)
        cfg.validate()
    except UserError as e:
        st.error(f"Not started: {e}")
        return
    command = L.study_command(cfg, present, margin, int(max_seeds), budget_min * 60 if budget_min else None, out_dir)
    try:
        pid = _launch(command, out_dir)
    except (UserError, OSError) as e:  # a report folder that cannot be written, a planted link for its log
        st.error(f"Not started: {e}")
        return
    st.success(f"Started in background process {pid}; it keeps going if you leave the page. Log: {out_dir / L.LOG}")


def _launched(out_dir: Path) -> int | None:
    """The live process this session started on `out_dir`, if any: for the seconds before it writes its state,
    study.json cannot tell that it runs, and Start and Resume stay greyed out on it."""
    pid = st.session_state.get("until_launched", {}).get(str(out_dir))
    return pid if pid is not None and process.alive(pid) else None


def _launch(command: list[str], out_dir: Path) -> int:
    """Launch the study and remember its pid for this session (_launched); the pid. (A second process on the
    folder from elsewhere, another tab or a command, is refused by the study itself.)"""
    pid = st.session_state.setdefault("until_launched", {})[str(out_dir)] = L.launch(command, out_dir)
    return pid


@st.fragment(run_every=3)
def rounds(out_dir: str) -> None:
    """The study's rounds and verdicts so far, its state, and Stop or Resume; refreshed every 3 s from study.json."""
    seq = L.state(Path(out_dir))
    if seq is None:
        return
    outcome = seq.get("outcome") or {}
    spent = f"{format_seconds(seq.get('spent_s') or 0)} spent" + (
        f" of {format_seconds(seq['budget_s'])}" if seq.get("budget_s") else "")
    if seq["alive"]:
        st.info(f"Running in process {seq['pid']}: round {len(seq['rounds']) + 1}; {spent}.")
        if st.button("Stop", key="until_stop"):
            L.stop(Path(out_dir))
            st.info("Stop requested: the current run stops after its batch. Resume here later.")
    elif seq.get("state") == "finished":
        st.success(f"Stopped: {outcome.get('stop')}; {spent}. Undecided: "
                   f"{', '.join(outcome.get('undecided') or []) or 'none'}.")
    else:
        st.warning(f"Stopped before deciding ({spent}); Resume runs the same command and goes on from the last round.")
        if st.button("Resume", key="until_resume", disabled=_launched(Path(out_dir)) is not None) and seq.get("command"):
            try:
                st.success(f"Resumed in background process {_launch(seq['command'], Path(out_dir))}.")
            except (UserError, OSError) as e:
                st.error(f"Not resumed: {e}")
    rows = [{"round": r["round"], "seeds per size": r["n_seeds"],
             "nominal level": None if r.get("levels") is None else f"{r['levels']['first']:.2g}",
             **({f"{c['a']} vs {c['b']}": v for c, v in zip(r["look"]["comparisons"], r["verdicts"])}
                if r.get("verdicts") else {})} for r in seq.get("rounds", [])]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    for c in outcome.get("comparisons", []):
        if c["verdict"] == "undecided":
            st.caption(f"{c['a']} undecided; a fixed-sample estimate: {c['seeds_needed']}.")
    tail = L.log_tail(Path(out_dir))
    if tail and seq["alive"]:
        st.code(tail, language=None)
