"""The Train page's recipe form, drawn from TrainConfig's knobs: each field's label, help and allowed values
are written once, in core.train.recipe, and the page offers what the command lines offer."""
from __future__ import annotations

import dataclasses
from typing import Any

from core.train.recipe import TrainConfig

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
DEFAULTS = TrainConfig(data_root="", runs_dir="")


def knob_input(where: Any, name: str, key: str, **widget: Any) -> Any:
    """The widget for TrainConfig field `name` in `where` (a column, the page): a selectbox for choices, a
    checkbox for a switch, a number input bounded by the knob's range, a text input otherwise. `widget`
    overrides the label, help or bounds where the page needs them (a subset capped at the split)."""
    meta, default = FIELDS[name].metadata, getattr(DEFAULTS, name)
    help_text = widget.pop("help", meta["help"][:1].upper() + meta["help"][1:] + ".")
    label = widget.pop("label", meta["label"])
    if meta["choices"]:
        options = widget.pop("options", list(meta["choices"]))
        index = widget.pop("index", options.index(default) if default in options else 0)
        return where.selectbox(label, options, index=index, key=key, help=help_text, **widget)
    if isinstance(default, bool):
        return where.checkbox(label, value=default, key=key, help=help_text, **widget)
    if isinstance(default, str):
        return where.text_input(label, value=default, key=key, help=help_text, **widget)
    kind = float if isinstance(default, float) else int
    # An optional knob (the subset) starts at its lowest value, which the page reads as "all".
    bounds = {"min_value": kind(meta["low"]), "max_value": kind(meta["high"])} | ({} if default is None else {"value": default})
    return where.number_input(label, **{**bounds, **widget}, key=key, help=help_text)
