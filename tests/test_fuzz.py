"""Fuzzing what surrounds a run (issue #21), a few examples each so CI stays in seconds; `python -m bench
--only fuzz` runs the same properties with many more (tests/fuzz_cases.py holds them)."""
from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from core.train.recipe import TrainConfig
from tests import fuzz_cases as F

# Examples per property in CI; the page properties drive Streamlit (about a second an example).
CI_EXAMPLES, CI_PAGE_EXAMPLES = 25, 4


def test_damaged_run_files_leave_readers_writers_and_other_runs_alone(finished_runs):
    F.fuzz(F.damaged_run_property, {"damage": F.damages}, CI_EXAMPLES, template=finished_runs[28])()


def test_damaged_run_files_leave_the_pages_up(finished_runs, data_root):
    F.fuzz(F.damaged_run_pages_property, {"damage": F.damages}, CI_PAGE_EXAMPLES, template=finished_runs[28],
           data_root=data_root)()


def test_any_config_value_is_refused_or_valid(finished_runs):
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    F.fuzz(F.config_value_property, {"field": st.sampled_from(fields), "value": F.json_values}, CI_EXAMPLES,
           template=finished_runs[28])()


def test_url_parameters_never_take_the_run_page_down_or_draw_links(finished_runs, data_root):
    params = st.dictionaries(st.sampled_from(["run", "runs_dir", "data_root"]), F.url_texts, min_size=1)
    F.fuzz(F.url_property, {"params": params}, CI_PAGE_EXAMPLES, runs_dir=finished_runs[28].parent,
           data_root=data_root)()


def test_any_training_flags_end_with_status_2_and_no_run_left():
    F.fuzz(F.cli_flags_property, {"flags": F.flags}, CI_EXAMPLES)()
