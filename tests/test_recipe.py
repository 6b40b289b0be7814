"""The recipe written once (issue #26): TrainConfig's knobs build the train and study command lines and the
Train page, and `validate` checks each knob's range, so no front end offers or accepts a different set."""
from __future__ import annotations

import dataclasses
import math

import pytest

from core.study.cli import RECIPE, _parser as study_parser
from core.train.__main__ import _parser as train_parser
from core.train.recipe import ConfigError, TrainConfig, flag

KNOBS = [f.name for f in dataclasses.fields(TrainConfig)]


def _flags(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_every_knob_is_a_train_flag_and_every_recipe_knob_a_study_flag():
    train, study = _flags(train_parser()), _flags(study_parser())
    missing_train = [k for k in KNOBS if flag(k) not in train and flag(k).replace("--", "--no-", 1) not in train]
    missing_study = [k for k in RECIPE if flag(k) not in study and flag(k).replace("--", "--no-", 1) not in study]
    assert not missing_train and not missing_study, (missing_train, missing_study)
    # The knobs the study used to lack (issue #26) are there now.
    assert {"--pos-weight-clip", "--threshold", "--select-by"} <= study


def test_flags_parse_into_the_config_with_the_knob_defaults():
    args = vars(train_parser().parse_args(["--weight-decay", "0.05", "--schedule", "cosine", "--no-channels-last",
                                           "--augment", "--select-by", "val_loss"]))
    cfg = TrainConfig(**{k: v for k, v in args.items() if k in KNOBS and v is not None})
    assert (cfg.weight_decay, cfg.schedule, cfg.channels_last, cfg.augment, cfg.select_by) == (0.05, "cosine", False, True, "val_loss")
    defaults = TrainConfig()
    study = vars(study_parser().parse_args([]))
    assert all(study[k] == getattr(defaults, k) for k in RECIPE if k not in ("data_root", "runs_dir"))


@pytest.mark.parametrize("field, bad", [
    ("epochs", 0), ("epochs", -1), ("batch_size", 0), ("lr", 0.0), ("lr", 1e300), ("lr", math.nan),
    ("weight_decay", 10.0), ("pos_weight_clip", math.inf), ("pos_weight_clip", -1.0), ("threshold", 1.0),
    ("patience", -1), ("subset", 0), ("seed", -1), ("seed", 2**70), ("size", 32), ("model", "../../etc"),
    ("device", "tpu"), ("amp", "fp8"), ("select_by", "train_loss"), ("schedule", "step")])
def test_validate_refuses_each_knob_out_of_range(field, bad):
    with pytest.raises(ConfigError, match=flag(field)):
        TrainConfig(**{field: bad}).validate()


def test_validate_names_every_bad_knob_at_once_and_passes_the_defaults():
    TrainConfig().validate()
    with pytest.raises(ConfigError) as e:
        TrainConfig(epochs=0, lr=2.0, device="tpu").validate()
    assert all(f in str(e.value) for f in ("--epochs 0", "--lr 2.0", "--device 'tpu'"))


def test_the_train_page_offers_every_knob(open_page, data_root, tmp_path):
    """Every knob but the folders (the sidebar's) has a widget; the advanced ones reach the run's config."""
    at = open_page("train.py", data_root, tmp_path / "runs").run()
    keys = {w.key for kind in ("selectbox", "number_input", "checkbox", "text_input") for w in getattr(at, kind)}
    page_keys = {"size": "train_size", "model": "train_model", "epochs": "train_epochs", "batch_size": "train_batch",
                 "lr": "train_lr", "pos_weight_clip": "train_clip", "subset": "train_subset", "select_by": "train_select",
                 "patience": "train_patience", "seed": "train_seed", "device": "train_device", "name": "train_name",
                 "augment": "train_augment", "weight_decay": "train_weight_decay", "schedule": "train_schedule",
                 "threshold": "train_threshold", "amp": "train_amp", "channels_last": "train_channels_last"}
    assert set(page_keys) == set(KNOBS) - {"data_root", "runs_dir"}
    assert set(page_keys.values()) <= keys, set(page_keys.values()) - keys
