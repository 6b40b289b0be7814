"""The Train page's recipe form, drawn from TrainConfig's knobs: each field's label, help and allowed values
are written once, in core.train.recipe, and the page offers what the command lines offer.

The form survives a reload: every value that differs from its default is in the page's URL (read back, as
untrusted, through ui.url_state's checks). "Train again with this recipe" (Run details) opens the page with
`?from_run=<run id>`, and that run's recipe fills the form (prefill_from_run)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from core.runs import folder as runs_folder
from core.runs import record as runs
from core.train.recipe import TrainConfig
from ui.url_state import Control, parse

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
DEFAULTS = TrainConfig(data_root="", runs_dir="")
_PREFILL = "train_prefill"  # field -> value from the run named by ?from_run=, applied as each widget is drawn


def prefill_from_run(runs_dir: Path) -> str | None:
    """Once per link (it leaves the URL): the recipe of the run `?from_run=<id>` names, to fill the form with; the
    run's id (None when the link names none). A run that is not in `runs_dir` or has no readable config is said."""
    wanted = st.query_params.get("from_run")
    if not wanted:
        return None
    del st.query_params["from_run"]  # from here on the URL carries the form itself, as after any change
    try:
        train = runs.read_config(runs_folder.resolve_run(runs_dir, wanted))["train"]
    except runs.RunError:
        # The id is not shown: messages render markdown, and a crafted link would draw in them.
        st.warning(f"The run this link names is not in {runs_dir} or has no readable recipe; the form is as it was.")
        return None
    st.session_state[_PREFILL] = {k: v for k, v in train.items() if k in FIELDS and k not in ("data_root", "runs_dir")}
    return wanted


def _control(name: str, key: str, options: list | None, widget: dict) -> Control:
    """What a URL may set the knob to: one of its options, or a number within the widget's bounds."""
    meta, default = FIELDS[name].metadata, getattr(DEFAULTS, name)
    if options is not None:
        return Control(key, str(default), options=tuple(str(o) for o in options))
    if default is None:  # the optional subset: 0 means all
        default = 0
    return Control(key, default, low=widget.get("min_value", meta["low"]), high=widget.get("max_value", meta["high"]))


def _restore(name: str, key: str, options: list | None, widget: dict) -> None:
    """Before the widget: a prefilled run's value, else (on a session's first draw) the URL's, when it is allowed."""
    control = _control(name, key, options, widget)
    prefill = st.session_state.get(_PREFILL, {})
    text = None
    if name in prefill:  # the run's value wins over what the form held; a run's "no subset" is the form's 0
        raw = prefill.pop(name)
        text = "0" if raw is None else ("1" if raw else "0") if isinstance(raw, bool) else str(raw)
    if text is None and key in st.session_state:
        return
    if text is None:
        text = st.query_params.get(key)
    if text is not None and len(text) > widget.get("max_chars", len(text)):
        return
    value = parse(control, text)
    if value is not None:
        st.session_state[key] = options[control.options.index(value)] if options is not None else value


def _remember(name: str, key: str, value: Any) -> None:
    default = getattr(DEFAULTS, name)
    if value == default or (default is None and not value):
        st.query_params.pop(key, None)
    else:
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        if st.query_params.get(key) != text:
            st.query_params[key] = text


def knob_input(where: Any, name: str, key: str, **widget: Any) -> Any:
    """The widget for TrainConfig field `name` in `where` (a column, the page): a selectbox for choices, a
    checkbox for a switch, a number input bounded by the knob's range, a text input otherwise. `widget`
    overrides the label, help or bounds where the page needs them (a subset capped at the split). Its value
    starts from a prefilled run or the URL and is kept in the URL."""
    meta, default = FIELDS[name].metadata, getattr(DEFAULTS, name)
    help_text = widget.pop("help", meta["help"][:1].upper() + meta["help"][1:] + ".")
    label = widget.pop("label", meta["label"])
    options = widget.pop("options", list(meta["choices"])) if meta["choices"] else None
    _restore(name, key, options, widget)
    held = key in st.session_state  # the widget then takes its value from session state, not a default of its own
    if options is not None:
        index = widget.pop("index", options.index(default) if default in options else 0)
        value = where.selectbox(label, options, **({} if held else {"index": index}), key=key, help=help_text, **widget)
    elif isinstance(default, bool):
        value = where.checkbox(label, **({} if held else {"value": default}), key=key, help=help_text, **widget)
    elif isinstance(default, str):
        value = where.text_input(label, **({} if held else {"value": default}), key=key, help=help_text, **widget)
    else:
        kind = float if isinstance(default, float) else int
        # An optional knob (the subset) starts at its lowest value, which the page reads as "all".
        bounds = {"min_value": kind(meta["low"]), "max_value": kind(meta["high"])} | (
            {} if default is None or held else {"value": default})
        value = where.number_input(label, **{**bounds, **widget}, key=key, help=help_text)
    _remember(name, key, value)
    return value
