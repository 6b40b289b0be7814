"""Your images: drop chest X-rays, pick runs (several sizes side by side), see each image as each model
sees it, per-finding probabilities at the run's saved thresholds, and a saliency map per finding.

Uploads stay in this session's memory: nothing is written anywhere. Reading an image, scoring it and
which findings not to trust are core.predict's; the maps are core.explain.saliency's.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from core.errors import UserError
from core.data.chestmnist import CLASS_NAMES
from core.explain import saliency as S
from core.predict import images as P
from core.predict import scoring as Q
from core.runs import record as runs
from core.runs.folder import RunInfo
from core.runs.record import RunError
from ui.common import evaluated_runs, file_mtime, run_label, through_app

SHOW_PX = 224


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _load_run(run_dir: str, checkpoint_mtime: float, thresholds_mtime: float) -> Q.RunModel:
    return Q.load_run(run_dir)


def load_run(info: RunInfo) -> Q.RunModel:
    """The run's model and thresholds, cached until its best checkpoint or thresholds file changes."""
    return _load_run(str(info.path), file_mtime(runs.checkpoint_path(info.path, "best")),
                     file_mtime(runs.thresholds_path(info.path)))


@st.cache_data(max_entries=64, show_spinner=False)
def _read(name: str, data: bytes) -> P.InputImage | str:
    return P.read_or_reason(name, data)


@st.cache_data(max_entries=256, show_spinner="Computing the map…")
def _map(run_dir: str, mtime: float, image: np.ndarray, c: int, method: str) -> np.ndarray:
    return S.attribute(_load_run(run_dir, mtime, file_mtime(runs.thresholds_path(run_dir))).model, image[None], c,
                       method)[0]


def _big(gray_or_rgb: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upscale for display: every model pixel stays a visible square."""
    return np.asarray(Image.fromarray(gray_or_rgb).resize((SHOW_PX, SHOW_PX), Image.NEAREST))


def _findings_table(run: Q.RunModel, prob: np.ndarray, doubtful: dict[str, str]) -> None:
    df = Q.findings(run, prob)
    df["trust"] = [f"little: {doubtful[f]}" if f in doubtful else "" for f in df["finding"]]
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "probability": st.column_config.NumberColumn(format="%.3f"),
        "threshold": st.column_config.NumberColumn(format="%.3f", help=run.thresholds_source),
        "margin": st.column_config.NumberColumn(format="%+.3f", help="probability − threshold")})


def _maps(info: RunInfo, run: Q.RunModel, x: np.ndarray, prob: np.ndarray, picked: list[int], method: str,
          doubtful: dict[str, str]) -> None:
    for c in picked:
        name = CLASS_NAMES[c]
        try:
            cam = _map(str(info.path), file_mtime(runs.checkpoint_path(info.path, "best")), x, c, method)
        except (RunError, ValueError) as e:
            st.error(f"No map for {name}: {e}")
            continue
        st.image(_big(S.overlay(x, cam)), output_format="PNG",
                 caption=f"{name} · p = {prob[c]:.3f} (threshold {run.thresholds[c]:.3f})")
        if not cam.any():
            st.warning(f"Empty map: no pixel raised {name}; there is nothing here to read.")
        if name in doubtful:
            st.warning(f"{name}: {doubtful[name]}.")


def show_image(item: P.InputImage, chosen: list[tuple[RunInfo, Q.RunModel, dict[str, str]]], method: str,
               key: str) -> None:
    """One image through every chosen run, side by side: as the model sees it, findings, maps."""
    st.subheader(item.name)
    st.caption("Read as: " + "; ".join(item.notes))
    inputs = [(info, run, doubtful, item.at(run.size)) for info, run, doubtful in chosen]
    probs = [Q.score(run, x[None])[0] for _, run, _, x in inputs]
    first = Q.findings(inputs[0][1], probs[0])
    default = [c for c in range(len(CLASS_NAMES)) if first["decision"][c] == "present"] or [int(np.argmax(probs[0]))]
    picked = st.multiselect("Findings to map", range(len(CLASS_NAMES)), default=default, key=f"pred_map_{key}",
                            format_func=lambda c: CLASS_NAMES[c],
                            help="Opens on the findings the first run decides present (else its most probable one).")
    for col, (info, run, doubtful, x), prob in zip(st.columns(len(inputs)), inputs, probs):
        with col:
            st.image(_big(x), output_format="PNG", caption=f"As the {run.size} px model sees it · {run.model_name}",
                     clamp=True)
            st.caption(f"Run {run.run_id}")
            if not run.official:
                st.warning(f"Trained on {run.data}: scores on your image say how that model reads it, no more.")
            _findings_table(run, prob, doubtful)
            _maps(info, run, x, prob, picked, method, doubtful)


def pick_runs(available: list[RunInfo]) -> list[tuple[RunInfo, Q.RunModel, dict[str, str]]]:
    """The runs picked (the newest one at first), each loaded with the findings not to trust."""
    by_id = {r.id: r for r in available}
    held = st.session_state.get("pred_runs")
    kept = [i for i in held or [] if i in by_id]
    # A first visit, or runs deleted since: the newest run; a selection the user emptied stays empty.
    st.session_state["pred_runs"] = [available[0].id] if held is None or (held and not kept) else kept
    ids = st.multiselect("Runs (several sizes side by side)", list(by_id), key="pred_runs",
                         format_func=lambda i: run_label(by_id[i]))
    out = []
    for i in ids:
        try:
            out.append((by_id[i], load_run(by_id[i]), Q.trust_warnings(by_id[i].path)))
        except UserError as e:
            st.error(f"Run {i} cannot score images: {e}")
    return out


through_app()
st.title("Your images")
st.caption("Your own chest X-rays through the runs you pick. Each image is made into each run's input exactly as "
           "its training images were (grayscale, centre crop to a square, bicubic resize). No true findings are "
           "known here: a probability says how the model reads the image, not what is in it. Maps show which pixels "
           "raised the model's score for a finding, not where a radiologist would look, and mean little where the "
           "model's AUC for the finding is near chance. **Not for clinical use.**")
available = evaluated_runs()
if available is None:
    st.stop()
if not available:
    st.info("No evaluated runs yet in the runs folder. Train one on the **Train** page; it is evaluated on test "
            "when it finishes.")
    st.stop()
chosen = pick_runs(available)
method = st.selectbox("Saliency method", S.METHODS, key="pred_method", format_func=S.METHOD_LABELS.get)
suffixes = P.accepted_suffixes()
uploads = st.file_uploader("Chest X-ray images", type=[s.lstrip(".") for s in suffixes], accept_multiple_files=True,
                           key="pred_files", help="Held in this session's memory only: nothing is written anywhere. "
                           f"Up to {P.MAX_BYTES // 2**20} MB each. DICOM needs the optional pydicom package"
                           + (" (installed)." if P.dicom_supported() else " (not installed here)."))
if not chosen:
    st.info("Pick at least one run above.")
    st.stop()
if not uploads:
    st.info(f"Drop one or more images ({', '.join(suffixes)}) above to see what each run makes of them.")
    st.stop()
for n, upload in enumerate(uploads):
    item = _read(upload.name, upload.getvalue())
    if isinstance(item, str):
        st.error(f"**{upload.name}** cannot be used: {item}.")
        continue
    show_image(item, chosen, method, key=f"{n}_{upload.file_id}")
