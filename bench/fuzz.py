"""Fuzzing what surrounds a run (issue #21) with many more examples than CI runs: damaged run files (core's
readers and writers, then the Data & runs and Run pages), a run's recorded settings, URL parameters and
core.train's flags. Each property is tests/fuzz_cases.py's, the one CI runs with a few examples.

A row passes when no example broke its promise; its note names the first example that did.
"""
from __future__ import annotations

import dataclasses
import time

from bench.common import Context, Row

# Examples per property and mode; the page properties drive Streamlit, about a second an example.
EXAMPLES = {"full": (2000, 200), "quick": (300, 30), "tiny": (10, 2)}


def run(ctx: Context) -> list[Row]:
    from hypothesis import strategies as st

    from core.train.recipe import TrainConfig
    from tests import fuzz_cases as F

    n, n_pages = EXAMPLES[ctx.mode.name]
    root = ctx.planted_root(28)
    template = ctx.runs.train(root, 28, 1)["run_dir"]
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    params = st.dictionaries(st.sampled_from(["run", "runs_dir", "data_root"]), F.url_texts, min_size=1)
    cases = {
        "damaged_run_files": (F.damaged_run_property, {"damage": F.damages}, n, {"template": template}),
        "damaged_run_pages": (F.damaged_run_pages_property, {"damage": F.damages}, n_pages,
                              {"template": template, "data_root": root}),
        "config_values": (F.config_value_property, {"field": st.sampled_from(fields), "value": F.json_values}, n,
                          {"template": template}),
        "url_parameters": (F.url_property, {"params": params}, n_pages, {"runs_dir": template.parent, "data_root": root}),
        "train_flags": (F.cli_flags_property, {"flags": F.flags}, n, {}),
    }
    rows = []
    for name, (prop, strategies, examples, fixed) in cases.items():
        ctx.log(f"fuzz {name}: {examples} examples")
        t = time.perf_counter()
        try:
            F.fuzz(prop, strategies, examples, **fixed)()
            note, passed = "", True
        except Exception as e:  # Hypothesis re-raises the smallest failing example's error
            note, passed = f"{type(e).__name__}: {str(e)[:300]}", False
        rows.append(Row(f"fuzz.{name}", examples, "examples", target="no failure", passed=passed,
                        note=note or f"{time.perf_counter() - t:.0f} s"))
    return rows
