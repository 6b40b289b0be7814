"""Train: set a recipe, see what it costs on this machine, start it in the background, follow it live.

Training runs in a detached process (core.train.background), so it survives reruns, page switches,
closed tabs and even a restart of the app; this page only reads the run folders.
"""
from __future__ import annotations

import streamlit as st

from ui.common import through_app

through_app()
# The heading first. The recipe below needs no torch (core.models' registry and core.train.cost load it
# only to build or time a model), so it draws while app.py's warm-up is still importing torch; training
# itself (core.train, scikit-learn) and the study's planner are imported when a button asks for them.
st.title("Train")

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402

from core.data import chestmnist as D  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.runs import record as runs  # noqa: E402
from core.runs import folder as runs_folder  # noqa: E402
from core.train import recipe as C  # noqa: E402
from core.train import cost as E  # noqa: E402
from core.train import background as L  # noqa: E402
from core.models.registry import MODELS  # noqa: E402
from core.study.recipe import slug  # noqa: E402
from ui.recipe_form import knob_input, prefill_from_run  # noqa: E402
from ui.until_decided import until_decided  # noqa: E402
from ui.speed import DRAWN, STALE_S, Reading, speed  # noqa: E402
from ui.common import (RUN_LINK_COLUMN, RUN_METRIC_COLUMNS, data_root, data_root_problem, file_mtime,  # noqa: E402
                          md_literal, page_link, read_runs, run_label, run_metrics, run_url, runs_dir)

HOUR = 3600
SELECT_BY_LABELS = {"val_auc": "val AUC (medmnist)", "val_loss": "val loss", "val_acc": "val ACC (medmnist, 0.5)"}
# A run the user just started or resumed shows no buttons for this long, so a second click during
# the few seconds before the background process marks it running cannot start a second trainer.
LAUNCH_GRACE_S = 30.0


@st.cache_data(max_entries=16, show_spinner=False)
def _split_sizes(root: str, size: int, mtime: float) -> tuple[dict[str, int], bool]:
    return D.split_counts_or_official(root, size)


def split_sizes(root, size: int) -> tuple[dict[str, int], bool]:
    """core.data.split_counts_or_official, cached until the file changes (raises DataError for an
    unreadable file). Counted from the labels: at 128/224 px loading the images would first unpack
    gigabytes, minutes before the estimate could show; starting a run checks the whole file."""
    return _split_sizes(str(root), size, file_mtime(D.npz_path(root, size)))


def recipe(root, rdir, present: list[int]) -> C.TrainConfig:
    """Every knob of TrainConfig (core.train.recipe's labels, help and ranges); the folders come from the sidebar."""
    st.subheader("Recipe")
    c = st.columns(4)
    v = {"size": knob_input(c[0], "size", "train_size", index=D.SIZES.index(present[0]) if present else 0,
                            format_func=lambda s: f"{s} px" + ("" if s in present else " (no data)")),
         # The study's variants stay on the command line: the picker offers the models to compare.
         "model": knob_input(c[1], "model", "train_model", options=list(MODELS),
                             help="res-cnn: strided stem + residual stages + global pooling (default). seed-cnn: the "
                                  "study's original CNN (its head grows with the input). resnet18/50: MedMNIST's "
                                  "reference models. The selection study's res-cnn variants: `python -m core.train "
                                  "--model res-cnn-narrow` (docs/models.md)."),
         "epochs": knob_input(c[2], "epochs", "train_epochs"),
         "batch_size": knob_input(c[3], "batch_size", "train_batch")}
    c = st.columns(4)
    v["lr"] = knob_input(c[0], "lr", "train_lr", min_value=1e-6, step=1e-4, format="%.6f")
    v["pos_weight_clip"] = knob_input(c[1], "pos_weight_clip", "train_clip", max_value=1000.0, step=1.0)
    try:  # the subset can be at most the training split (official ChestMNIST's when there is no data yet)
        top = split_sizes(root, int(v["size"]))[0]["train"]
    except D.DataError:  # shown with what to do under the estimate
        top = 10_000_000
    if int(st.session_state.get("train_subset") or 0) > top:  # e.g. switched to a size with fewer images
        st.session_state["train_subset"] = top
        st.toast(f"Training subset capped at {top:,}: the whole training split at {v['size']} px.")
    v["subset"] = knob_input(c[2], "subset", "train_subset", min_value=0, max_value=top, step=100,
                             help=f"A seeded random subset of the at most {top:,} training images; val and test "
                                  "stay whole.") or None  # 0 = all
    v["select_by"] = knob_input(c[3], "select_by", "train_select", format_func=SELECT_BY_LABELS.get)
    c = st.columns(4)
    v["patience"] = knob_input(c[0], "patience", "train_patience")
    v["seed"] = knob_input(c[1], "seed", "train_seed", max_value=2**31 - 1)
    v["device"] = knob_input(c[2], "device", "train_device")
    v["name"] = knob_input(c[3], "name", "train_name", max_chars=40).strip()
    v["augment"] = knob_input(st, "augment", "train_augment", label="Augment (small random shifts and rotations, no flips)")
    with st.expander("Advanced: optimiser, schedule, precision, layout"):
        a = st.columns(3)
        v["weight_decay"] = knob_input(a[0], "weight_decay", "train_weight_decay", step=0.01, format="%.4f")
        v["schedule"] = knob_input(a[1], "schedule", "train_schedule")
        v["threshold"] = knob_input(a[2], "threshold", "train_threshold", min_value=0.01, max_value=0.99, step=0.05)
        a = st.columns(3)
        v["amp"] = knob_input(a[0], "amp", "train_amp")
        v["channels_last"] = knob_input(a[1], "channels_last", "train_channels_last")
    return C.TrainConfig(**v, data_root=str(root), runs_dir=str(rdir))


def _estimate(cfg: C.TrainConfig, size: int, n: dict[str, int]) -> E.Estimate | Reading | None:
    """The Estimate of `cfg` at `size` with split sizes `n` from the latest speed reading; None while
    it is measured; the Reading itself when measuring failed (its error says why)."""
    n_train = cfg.train_images(n["train"])
    reading = speed(cfg, size, n_train)
    if reading is None or reading.error:
        return reading
    return E.Estimate(reading.images_per_s, reading.device, n_train, n["val"], n["test"], cfg.epochs,
                      reading.start_s, reading.load)


def _total_text(e: E.Estimate) -> str:
    """The total, as a range when the machine was busy (the idle end first)."""
    low, high = e.idle_total_seconds, e.total_seconds
    return E.format_seconds(high) if low > 0.9 * high else f"{E.format_seconds(low)}–{E.format_seconds(high)}"


def show_estimate(cfg: C.TrainConfig) -> E.Estimate | None:
    """The cost of `cfg` on this machine, shown and returned; None while measuring or on an error."""
    st.subheader("Estimated cost on this machine")
    try:
        n, from_file = split_sizes(cfg.data_root, cfg.size)
    except D.DataError as e:
        st.error(f"{e}")
        return None
    note = "" if from_file else " Split sizes are those of official ChestMNIST, as there is no data for this size yet."
    if not from_file:
        st.warning(f"No {cfg.size} px data under {cfg.data_root}: download or import it on the Data & runs page "
                   "before training.")
    e = _estimate(cfg, cfg.size, n)
    if e is None:
        st.info(f"Measuring the training speed at {cfg.size} px in the background (a few batches); the estimate "
                "shows here when it is done. Everything else on the page works meanwhile.", icon=":material/timer:")
        return None
    if isinstance(e, Reading):
        st.error(f"Could not measure the training speed: {e.error}")
        return None
    c = st.columns(4)
    c[0].metric("Seconds per epoch", f"{e.seconds_per_epoch:,.1f} s", help=E.format_seconds(e.seconds_per_epoch))
    c[1].metric(f"Total for {cfg.epochs} epochs", _total_text(e),
                help="From starting the trainer process to the final scoring.")
    c[2].metric("Training images/s", f"{e.images_per_s:,.0f}")
    c[3].metric("Device", e.device)
    busy = (f" The machine was busy (load {e.load:.1f} per CPU) when it was measured: the range runs from an idle "
            "machine to one as busy as then." if e.idle_total_seconds <= 0.9 * e.total_seconds else "")
    st.caption(f"Speed measured on this machine in the background from a few training batches of random images (per "
               f"size, model, batch size and device; again after {STALE_S / 60:.0f} min or when the load changes); "
               f"a trainer process takes {E.format_seconds(e.start_seconds)} to start; {_images(e)} (validation and "
               f"scoring costed at {E.VAL_COST:g} of a training step per image, the scoring took "
               f"{E.format_seconds(e.final_seconds)}){_early_stop(cfg)}.{note}{busy}")
    if e.total_seconds > HOUR:
        subset_fit, epochs_fit = e.within(HOUR)
        hints = []
        if 0 < subset_fit < e.n_train:
            hints.append(f"a training subset of about {subset_fit:,} images")
        if epochs_fit >= 1:
            hints.append(f"at most {epochs_fit} epoch(s)")
        st.warning(f"This would take about {E.format_seconds(e.total_seconds)} on {e.device}: more than an hour. "
                   + (f"To stay within an hour use {' or '.join(hints)}" if hints else "Use a subset or fewer epochs")
                   + ", or a GPU.")
    return e


def _early_stop(cfg: C.TrainConfig) -> str:
    """The estimate counts every epoch: with patience on, a run may stop sooner (with it off it cannot)."""
    return (f"; an upper bound, as early stopping (patience {cfg.patience}) may end the run sooner" if cfg.patience
            else "")


def _images(e: E.Estimate) -> str:
    return (f"{e.n_train:,} training and {e.n_val:,} validation images per epoch, then {e.n_val:,} validation and "
            f"{e.n_test:,} test images scored once with the best checkpoint")


def sweep_total(cfg: C.TrainConfig, present: list[int], e: E.Estimate) -> None:
    """What the sweep costs: one trainer process training each chosen size (`present`) and seed, one after another.

    Each size's speed is measured in the background (as the main estimate); every size is assumed to
    have the split sizes of estimate `e` (as the ChestMNIST files and NIH-1000 do), so no other
    size's file is opened for it.
    """
    try:  # where `e` used official split sizes (no file at this size), the sweep trains the files here
        n = split_sizes(cfg.data_root, cfg.size if cfg.size in present else present[0])[0]
    except D.DataError:
        return
    seeds = int(st.session_state.get("train_sweep_seeds", 1))
    measured = {}
    for size in present:
        one = _estimate(cfg, size, n)
        if not isinstance(one, E.Estimate):
            st.caption(f"Sweep estimate: measuring the speed at {size} px in the background…")
            return
        measured[size] = one
    # Each size was measured at its own moment's load (a 3-7x swing within minutes on a shared machine made
    # 128 px read cheaper than 64 px): cost every size at one load, from idle to as busy as now.
    now = E.load_per_cpu()
    start = max(one.start_seconds for one in measured.values())
    low, high = ([(one.total_seconds_at(load) - one.start_seconds) * seeds for one in measured.values()]
                 for load in (0.0, now))
    parts = [f"{size} px {E.format_seconds(h)}" for size, h in zip(measured, high)]
    total = (E.format_seconds(start + sum(high)) if sum(low) > 0.9 * sum(high) else
             f"{E.format_seconds(start + sum(low))}–{E.format_seconds(start + sum(high))}")
    loads = sorted(one.load for one in measured.values())
    st.caption(f"Sweep estimate (**Same recipe at every size**): **{total}** for {cfg.epochs} epoch(s) at each size "
               f"and seed ({' + '.join(parts)}), one run after another in one process.",
               help=f"Speed measured once per size on this machine, at a load of {loads[0]:.1f}–{loads[-1]:.1f} per "
                    f"CPU; every size is costed at one load (the range runs from an idle machine to one as busy as "
                    f"now, {now:.1f} per CPU), so the sizes compare fairly, and every size is assumed to have this "
                    f"size's split ({_images(e)}).{_early_stop(cfg)}.")


@st.fragment(run_every=2)
def estimates(cfg: C.TrainConfig, present: list[int]) -> None:
    """The estimate and the sweep's, refreshed every 2 s: speeds are measured in the background and
    show up here when ready, so the page never waits for them."""
    e = show_estimate(cfg)
    if e is not None and present:
        sweep_total(cfg, present, e)
    st.session_state[DRAWN] = True


def _launched(run_dirs) -> None:
    stamp = time.time()
    st.session_state.setdefault("launched", {}).update({p.name: stamp for p in run_dirs})


def start(run_dirs) -> None:
    """Launch prepared run folders as one background queue and say so."""
    try:
        pid = L.launch(list(run_dirs))
    except (OSError, runs.RunError) as e:  # RunError: the log is a planted symlink, refused
        st.error(f"Could not start the training process: {e}. The run folder(s) stay queued; start them below.")
        return
    _launched(run_dirs)
    # Shown by the live view while any of these runs is queued or training, then dropped.
    st.session_state.setdefault("launch_notes", {})[pid] = [p.name for p in run_dirs]


def launch_notes(active_ids: set[str]) -> None:
    """'Started in background process …' for each queue this session started, while one of its runs is active."""
    notes = st.session_state.get("launch_notes", {})
    for pid, names in list(notes.items()):
        if active_ids.isdisjoint(names):
            del notes[pid]
        else:
            st.success(f"Started in background process {pid}: {', '.join(names)}. It keeps training if you leave "
                       "this page; its output is logged in the first run's folder.")


def sweep_choice(present: list[int]) -> tuple[list[int], int]:
    """The sweep's sizes (of those present, every one by default) and number of seeds (from the recipe's seed on)."""
    if "train_sweep_sizes" in st.session_state:  # a size whose data went away drops out
        st.session_state["train_sweep_sizes"] = [s for s in st.session_state["train_sweep_sizes"] if s in present]
    c = st.columns(2)
    sizes = c[0].multiselect("Sweep sizes", present, default=present, key="train_sweep_sizes",
                             format_func=lambda s: f"{s} px", help="The sizes the sweep trains, smallest first.")
    seeds = c[1].number_input("Seeds per size", 1, 20, 1, key="train_sweep_seeds",
                              help="Seeds from the recipe's seed on (seed, seed + 1, …): mean ± sd over seeds on Compare.")
    return sorted(sizes), int(seeds)


def start_buttons(cfg: C.TrainConfig, present: list[int]) -> None:
    """The Train and sweep buttons, and what they do when clicked."""
    chosen, n_seeds = sweep_choice(present)
    left, right = st.columns(2)
    sizes = ", ".join(map(str, chosen)) or "none chosen"
    seeds = f", {n_seeds} seeds" if n_seeds > 1 else ""
    train_clicked = left.button("Train", type="primary", key="train_go", width="stretch")
    sweep_clicked = right.button(f"Same recipe at every size ({sizes} px{seeds})", key="train_sweep", width="stretch",
                                 disabled=bool(present) and not chosen,
                                 help="One run per size and seed, trained one after another (smallest size first) "
                                      "in a single background process: the study's resolution sweep.")
    if (train_clicked or sweep_clicked) and (problem := data_root_problem(Path(cfg.data_root))):
        st.error(f"Not started: {problem}")
        return
    if train_clicked:
        from core.train import loop as T

        try:
            runs_folder.check_runs_dir(cfg.runs_dir)
            run_dir = T.prepare_run(cfg)
        except UserError as e:
            st.error(f"Not started: {e}")
        else:
            start([run_dir])
    if sweep_clicked and not present:
        st.error(f"No data under {cfg.data_root}: download or import at least one size on the Data & runs page.")
    elif sweep_clicked:
        sweep(cfg, chosen, n_seeds)


def sweep(cfg: C.TrainConfig, sizes: list[int], n_seeds: int) -> None:
    """The study's plan (core.study.runner.plan_runs) for `n_seeds` seeds (from the recipe's) at each of `sizes`: runs
    of the same name and recipe are re-used (finished) or resumed, the others prepared; then one queue."""
    from core.study.runner import plan_runs

    try:
        runs_folder.check_runs_dir(cfg.runs_dir)
        plan = plan_runs(cfg, slug(cfg.name) or "sweep", sizes, list(range(cfg.seed, cfg.seed + n_seeds)), previous=None)
    except UserError as e:
        st.error(f"Sweep not started: {e}")
        return
    busy = [p for p in plan if p.state in ("running", "queued")]
    todo = [p.run_dir for p in plan if p.state not in ("finished", "running", "queued")]
    done = [p for p in plan if p.state == "finished"]
    if done:
        st.info("Already trained with this recipe, re-used: " + ", ".join(f"{p.size} px ({p.run_dir.name})" for p in done)
                + ". Change the run name or seed for new runs.")
    if busy:
        st.warning("Being trained by another process: " + ", ".join(f"{p.size} px ({p.run_dir.name})" for p in busy))
    if todo:
        start(todo)


def progress_of(r: runs_folder.RunInfo) -> tuple[float, str]:
    """(fraction done, text) from the run's progress, which the trainer writes about once a second."""
    latest = runs.read_progress(r.path)
    if latest is None:
        return 0.0, "Starting: loading data and model…"
    p, written = latest
    if written < runs.read_status(r.path).get("updated", 0):  # left over from before a resume
        return (r.epochs_done / r.epochs if r.epochs else 0.0), "Starting: loading data and checkpoint…"
    epochs, n_batches = max(1, p.epochs), max(1, p.n_batches)
    if p.phase == "train":
        frac = (p.epoch - 1 + p.batch / n_batches) / epochs
        text = (f"epoch {p.epoch}/{epochs} · batch {p.batch}/{n_batches} · {p.images_per_s:,.0f} img/s · "
                f"ETA {E.format_seconds(p.eta_s)}")
    elif p.phase == "val":
        frac, text = p.epoch / epochs, f"epoch {p.epoch}/{epochs} · validating"
    else:
        frac, text = 1.0, "evaluating the best checkpoint on val and test"
    return min(max(frac, 0.0), 1.0), text


LIVE_METRICS = (("loss", "loss"), ("auc", "AUC (medmnist)"))


def curves(rows: list[dict], key: str, name: str) -> alt.Chart:
    """Train and val `key` per epoch, one colour per split (one chart per metric, so each fills its column)."""
    long = pd.DataFrame([{"epoch": row["epoch"], "split": split, "metric": name, "value": row.get(f"{split}_{key}")}
                         for row in rows for split in ("train", "val")]).dropna(subset=["value"])
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=None),
        color=alt.Color("split:N", scale=alt.Scale(domain=["train", "val"]), legend=alt.Legend(orient="bottom")),
        tooltip=["metric", "split", "epoch", alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=160, title=name,  # fit the width only: a fitted height would squash the plot under its legend
                 autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def _recently_launched(r: runs_folder.RunInfo) -> bool:
    """Started or resumed from this session in the last LAUNCH_GRACE_S, and its status not written since:
    once the trainer has said anything (running, stopped, failed) the grace is over."""
    launched = st.session_state.get("launched", {}).get(r.id, 0.0)
    return time.time() - launched < LAUNCH_GRACE_S and runs.read_status(r.path).get("updated", 0.0) <= launched


def resume(r: runs_folder.RunInfo) -> None:
    # 'queued' tells the trainer (and other tabs) that a process is on its way; train() sets 'running'.
    runs.set_status(r.path, "queued")
    start([r.path])


def show_active(r: runs_folder.RunInfo, anything_running: bool) -> None:
    with st.container(border=True):
        st.markdown(f"**{md_literal(run_label(r))}**")
        if r.state == "queued":
            if anything_running or _recently_launched(r):
                st.caption("Queued: it starts when the runs before it in its background queue are done.")
            else:
                st.caption("Queued, but no run is training now: its queue was stopped or never started.")
                if st.button("Start", key=f"start-{r.id}"):
                    resume(r)
            return
        frac, text = progress_of(r)
        st.progress(frac, text=text)
        rows = runs.read_metrics(r.path)
        if rows:
            for col, (key, name) in zip(st.columns(len(LIVE_METRICS)), LIVE_METRICS):
                col.altair_chart(curves(rows, key, name), width="stretch")
        if runs.stop_requested(r.path):
            st.caption("Stop requested: it stops after the current batch (the unfinished epoch is repeated on resume).")
        elif st.button("Stop", key=f"stop-{r.id}"):
            runs.request_stop(r.path)
            st.info("Stop requested: it stops after the current batch. Resume it here later.")


def show_attention(r: runs_folder.RunInfo) -> None:
    with st.container(border=True):
        st.markdown(f"**{md_literal(run_label(r))}** ({r.epochs_done}/{r.epochs or '?'} epochs done)")
        if r.error:
            (st.error if r.state == "failed" else st.caption)(r.error)
        if not runs.is_run_dir(r.path):
            return
        if _recently_launched(r):
            st.caption("Starting…")
        elif st.button("Resume" if r.state != "failed" else "Retry (resumes from the last finished epoch)",
                       key=f"resume-{r.id}"):
            resume(r)


@st.fragment(run_every=2)
def live(rdir) -> None:
    """Active runs, refreshed every 2 s from their folders; what needs attention; what just finished."""
    infos = read_runs(rdir)
    if infos is None:
        return
    anything_running = any(r.state == "running" for r in infos)
    active = [r for r in infos if r.state in ("running", "queued")]
    launch_notes({r.id for r in active})
    st.subheader("Active runs")
    if not active:
        st.caption(f"No run is training or queued in {rdir}.")
    # Queued runs in size order (their ids sort 128 before 28), as a sweep trains them.
    for r in sorted(active, key=lambda r: (r.state != "running", r.size or 0, r.id)):
        show_active(r, anything_running)

    attention = [r for r in infos if r.state in ("stopped", "interrupted", "failed")][:10]
    if attention:
        st.subheader("Stopped, interrupted or failed")
        for r in attention:
            show_attention(r)

    finished = [r for r in infos if r.state == "finished"][:5]
    if finished:
        st.subheader("Recently finished")
        st.dataframe(pd.DataFrame([{"run": r.id, "size (px)": r.size, "model": r.model, "epochs": r.epochs_done,
                                    **run_metrics(r), "details": run_url(r.id)} for r in finished]), hide_index=True,
                     column_config={**RUN_METRIC_COLUMNS, "details": RUN_LINK_COLUMN})
        page_link("pages/compare.py", "Compare runs", icon=":material/monitoring:")


root, rdir = data_root(), runs_dir()
if prefill_from_run(rdir):
    st.info("The recipe of the run you came from is filled in below: change what you want to try (a size, a seed, "
            "a setting) and train.")
present = D.available_sizes(root) if root.is_dir() else []
if problem := data_root_problem(root):
    st.error(problem)
elif not present:
    st.info(f"No ChestMNIST data under {root}. Download or import a size on the Data & runs page first; "
            "the cost estimate below still works.")
cfg = recipe(root, rdir, present)
estimate_slot = st.container()
start_buttons(cfg, present)
until_decided(cfg, present)
st.divider()
live(rdir)
# Last, though shown above the buttons: a speed not measured yet starts its background measurement
# here, once the rest of the page is on screen, so the first visit is not slowed by it.
with estimate_slot:
    try:
        cfg.validate()
    except C.ConfigError as e:
        st.error(f"{e}")
    else:
        estimates(cfg, sorted(st.session_state.get("train_sweep_sizes", present)))
