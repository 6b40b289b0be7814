"""core.runs.groups (seed groups, same images) and core.study.comparisons (families, adjusted p, verdicts) on
hand-made run folders and stand-in differences: no training."""
import math

import numpy as np
import pytest

from core import metrics
from core.runs import groups as G
from core.runs import record as runs
from core.study import comparisons as C


def fake_run(tmp_path, name, size=64, seed=0, data_root="demo", md5="abc", labels=None, scores=None, **train):
    run = tmp_path / name
    run.mkdir()
    config = {"train": {"size": size, "seed": seed, "model": "res-cnn", "data_root": str(data_root), "epochs": 3,
                        "name": name, **train}, "data": {"md5": md5}}
    runs.write_config(run, config)
    rng = np.random.default_rng(seed)
    labels = (rng.random((40, 14)) < 0.3).astype(np.float32) if labels is None else labels
    runs.save_scores(run, "test", rng.random(labels.shape).astype(np.float32) if scores is None else scores, labels)
    return run


def test_seed_groups_group_by_recipe_and_size_and_count_a_seed_once(tmp_path):
    configs = {"20250101-a": {"size": 64, "seed": 0, "model": "m", "lr": 0.1, "name": "x", "device": "cpu"},
               "20250101-b": {"size": 64, "seed": 1, "model": "m", "lr": 0.1, "name": "y", "device": "cuda"},
               "20250102-copy": {"size": 64, "seed": 0, "model": "m", "lr": 0.1, "name": "z"},
               "20250101-c": {"size": 28, "seed": 0, "model": "m", "lr": 0.1},
               "20250101-d": {"size": 64, "seed": 0, "model": "m", "lr": 0.2}}
    groups = G.seed_groups(configs)
    # The later run of seed 0 (its id begins with a later time) is the one used; the earlier is set aside.
    assert [(g.size, g.runs, g.seeds, g.duplicates) for g in groups] == [
        (64, ["20250101-b", "20250102-copy"], [1, 0], ["20250101-a"]), (28, ["20250101-c"], [0], []),
        (64, ["20250101-d"], [0], [])]
    assert groups[0].recipe == groups[1].recipe != groups[2].recipe


def test_a_sweep_run_and_a_study_run_of_one_recipe_and_seed_count_once_and_the_app_says_so():
    sweep = {"size": 64, "seed": 0, "model": "m", "epochs": 3, "name": "sweep"}
    configs = {"20250103-120000-64px-m-sweep-aaaa": sweep,
               "20250105-090000-64px-m-study-x-s0-bbbb": dict(sweep, name="study-x-s0"),
               "20250104-100000-64px-m-study-x-s1-cccc": dict(sweep, name="study-x-s1", seed=1)}
    (group,) = G.seed_groups(configs)
    assert sorted(group.seeds) == [0, 1] and len(group.runs) == 2
    assert group.duplicates == ["20250103-120000-64px-m-sweep-aaaa"]
    assert G.repeat_notes(group, "64 px") == [
        "2 runs repeat seed 0 of 64 px; the most recent (20250105-090000-64px-m-study-x-s0-bbbb) is used, the other "
        "(20250103-120000-64px-m-sweep-aaaa) left out."]


def test_same_images_is_one_decision_over_folder_md5_and_labels(tmp_path):
    labels = (np.random.default_rng(0).random((40, 14)) < 0.3).astype(np.float32)
    a = fake_run(tmp_path, "a", labels=labels)
    assert G.same_images(a, fake_run(tmp_path, "b", seed=1, labels=labels))
    # another size of the same folder holds the same images even though its file's MD5 differs
    assert G.same_images(a, fake_run(tmp_path, "c", size=28, md5="other", labels=labels))
    assert "different data files" in G.images_problem(a, fake_run(tmp_path, "d", md5="other", labels=labels))
    assert "test images from" in G.images_problem(a, fake_run(tmp_path, "e", data_root=tmp_path, labels=labels))
    flipped = labels.copy()
    flipped[3, 0] = 1 - flipped[3, 0]
    assert "different test labels on 1 of 40" in G.images_problem(a, fake_run(tmp_path, "f", labels=flipped))


def test_the_plan_declares_the_primary_family_apart_from_exploratory_ones():
    plan = C.resolution_plan([("r", 28), ("r", 64), ("r", 128), ("r", 224), ("q", 28), ("q", 64)])
    assert [(p["family"], p["kind"], p["a"], p["b"]) for p in plan] == [
        ("primary", "vs 224 px", ("r", 28), ("r", 224)), ("primary", "vs 224 px", ("r", 64), ("r", 224)),
        ("primary", "vs 224 px", ("r", 128), ("r", 224)), ("primary", "vs 64 px", ("q", 28), ("q", 64)),
        ("exploratory", "vs previous size", ("r", 64), ("r", 28)),
        ("exploratory", "vs previous size", ("r", 128), ("r", 64))]
    assert [p["b"] for p in C.resolution_plan([("r", 28), ("r", 64), ("r", 224)], 64) if p["family"] == "primary"] \
        == [("r", 64), ("r", 64)]


def stand_in(deltas):
    """A `difference` giving, per pair of single-run groups (named by run), a result with the given delta and se."""
    def difference(runs_a, runs_b, n_boot, seed, min_positives):
        delta, se = deltas[(runs_a[0], runs_b[0])]
        if se is None:
            raise metrics.PairingError("scored on other images")
        ti = metrics.t_interval(delta, se * se, 1e-5, 1e-5, 5, 5, 0.05)
        return {"delta": delta, "ci": (ti["ci_low"], ti["ci_high"]), "p_value": ti["p_value"], "se": ti["se"],
                "df": ti["df"], "scope": "recipes", "auc_a": 0.7, "auc_b": 0.7, "n_images": 381, "n_boot_used": n_boot,
                "excluded": [{"class": "Hernia", "reason": "too few positives: 1 < 5"}], "per_class": [],
                "image_var": se * se, "seed_var_a": 1e-5, "seed_var_b": 1e-5, "n_runs_a": 5, "n_runs_b": 5,
                "ci_level": 0.95, "min_positives": min_positives}
    return difference


def test_verdicts_rest_on_p_adjusted_within_each_family():
    keys = [("r", s) for s in (28, 64, 128, 224)]
    members = {k: [f"{k[1]}"] for k in keys}
    names = {k: f"{k[1]} px" for k in keys}
    deltas = {("28", "224"): (-0.040, 0.004), ("64", "224"): (-0.021, 0.004), ("128", "224"): (0.001, 0.001),
              ("64", "28"): (0.019, 0.004), ("128", "64"): (0.022, 0.004)}
    rows = C.compare(C.resolution_plan(keys), members, names, n_boot=10, difference=stand_in(deltas))
    primary = [r for r in rows if r["family"] == "primary"]
    raw = [r["p_value"] for r in primary]
    assert [r["p_adjusted"] for r in primary] == pytest.approx(metrics.holm(raw).tolist())
    assert all(r["p_adjusted"] >= r["p_value"] for r in rows)
    for r in rows:
        decided = r["p_adjusted"] < 0.05
        assert r["verdict"].startswith("not distinguishable") != decided
        assert r["winner"] == (int(np.sign(r["delta"])) if decided else 0)  # the side the verdict's sentence names
    assert primary[0]["verdict"].startswith("224 px better than 28 px") and primary[0]["winner"] == -1
    # non-inferiority: only 128 px is within 0.01 of 224 px; the exploratory row has none
    assert [r["noninferior"] for r in primary] == [False, False, True]
    assert primary[2]["noninferiority"].startswith("128 px is non-inferior to 224 px at margin 0.01 (lower bound")
    assert "noninferiority" not in rows[-1] and rows[-1]["family"] == "exploratory"
    assert rows[0]["classes_excluded"] == ["Hernia (too few positives: 1 < 5)"]
    assert "seeds per group" in rows[0]["seeds_needed"]
    bh = C.compare(C.resolution_plan(keys), members, names, n_boot=10, correction="bh", difference=stand_in(deltas))
    assert [r["p_adjusted"] for r in bh if r["family"] == "primary"] == pytest.approx(
        metrics.adjust_p(raw, "bh"))


def test_a_pair_on_other_images_says_why_and_leaves_the_family():
    keys = [("r", 28), ("r", 64), ("r", 224)]
    deltas = {("28", "224"): (-0.04, 0.004), ("64", "224"): (0.0, None), ("64", "28"): (0.0, 0.01)}
    rows = C.compare(C.resolution_plan(keys), {k: [str(k[1])] for k in keys}, {k: f"{k[1]} px" for k in keys},
                     n_boot=10, difference=stand_in(deltas))
    assert rows[1]["verdict"] == "not compared: scored on other images" and math.isnan(rows[1]["p_adjusted"])
    assert rows[0]["p_adjusted"] == pytest.approx(rows[0]["p_value"])  # a family of one compared row


def test_equivalence_when_asked_is_tost_adjusted_over_the_family():
    keys = [("r", s) for s in (64, 128, 224)]
    deltas = {("64", "224"): (-0.004, 0.004), ("128", "224"): (0.001, 0.001), ("128", "64"): (0.005, 0.004)}
    rows = C.compare(C.resolution_plan(keys), {k: [str(k[1])] for k in keys}, {k: f"{k[1]} px" for k in keys},
                     n_boot=10, equivalence=True, difference=stand_in(deltas))
    primary = rows[:2]
    assert [r["p_equivalence"] for r in primary] != [None, None]
    adjusted = metrics.adjust_p([r["p_equivalence"] for r in primary])
    assert [r["equivalent"] for r in primary] == [p < 0.05 for p in adjusted] == [False, True]
    assert "; equivalent within ±0.01" in primary[1]["noninferiority"]
    assert "; equivalence within ±0.01 not shown" in primary[0]["noninferiority"]
    assert rows[2].get("equivalent") is None  # exploratory rows answer no equivalence question

