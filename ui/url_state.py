"""A page's view controls kept in the URL, so a reload or a shared link reopens the same view.

Not a page (app.py lists the pages). A control's first value in a session comes from the URL's
parameter of the same name (its widget key), else its default; after the widgets are drawn the URL
carries every value that differs from its default. Everything read from the URL is untrusted: a
value the control does not offer (another option, a number out of range, not a number) is ignored.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st


@dataclass(frozen=True)
class Control:
    """One widget's state: its key (also the URL parameter), default, and what a URL may set it to."""

    key: str
    default: Any
    options: tuple[str, ...] | None = None  # the choices of a radio or selectbox
    low: float | None = None  # bounds of a number
    high: float | None = None


def parse(control: Control, text: str | None) -> Any:
    """The value `text` (from the URL) gives `control`, or None when it is not one the control offers."""
    if text is None:
        return None
    if control.options is not None:
        return text if text in control.options else None
    if isinstance(control.default, bool):
        return {"1": True, "0": False}.get(text)
    if isinstance(control.default, (int, float)):
        try:
            value = float(text)
        except ValueError:
            return None
        low = -math.inf if control.low is None else control.low
        high = math.inf if control.high is None else control.high
        if not math.isfinite(value) or not low <= value <= high:
            return None
        return int(value) if isinstance(control.default, int) and value.is_integer() else value
    return text


def _text(value: Any) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def restore(controls: Sequence[Control]) -> None:
    """Before the widgets: a control this session has not set yet starts at the URL's value, else its default.

    The widgets are then drawn without a value of their own (session state holds it).
    """
    for c in controls:
        if c.key not in st.session_state:
            value = parse(c, st.query_params.get(c.key))
            st.session_state[c.key] = c.default if value is None else value


def remember(controls: Sequence[Control]) -> None:
    """After the widgets: the URL carries each control's value where it differs from the default."""
    for c in controls:
        value = st.session_state.get(c.key, c.default)
        if value != c.default:
            if st.query_params.get(c.key) != _text(value):
                st.query_params[c.key] = _text(value)
        elif c.key in st.query_params:
            del st.query_params[c.key]
