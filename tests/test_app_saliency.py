"""The Saliency page (AppTest) on real finished runs: browsing, the shown pixels, methods, small multiples,
honest warnings, the checks over a set, the chosen side-by-side runs, errors."""
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from core.data import chestmnist as D
from core.runs import record as R
from core.runs import checkpoints
from core.explain import saliency as S
from core.metrics import thresholds as T
from core.data.chestmnist import CLASS_NAMES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def media(monkeypatch):
    """{file id: bytes} of every image the page hands to Streamlit's media storage."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        stored[file_id] = path_or_data
        return file_id
    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return stored


def _open(open_page, data_root, run_dir, finding: int | None = 0):
    """The page on `run_dir`, on `finding` (None: the page's own choice of finding and image)."""
    at = open_page("saliency.py", data_root, run_dir.parent)
    at.session_state["run"] = run_dir.name
    if finding is not None:
        at.session_state["sal_class"] = finding
    at.run()
    assert not at.exception, at.exception
    return at


def _images(at, media):
    """[(caption, RGB array)] of the page's images, in page order."""
    out = []
    for el in (e for e in at.main if e.type == "image"):
        for img, caption in zip(el.proto.imgs, el.captions):
            file_id = img.url.rsplit("/", 1)[-1].split(".")[0]
            out.append((caption, np.asarray(Image.open(io.BytesIO(media[file_id])).convert("RGB"))))
    return out


def _shown_index(at):
    m = re.fullmatch(r"Test image (\d+)", at.subheader[0].value)
    assert m, at.subheader[0].value
    return int(m.group(1))


def _big(a):
    return np.asarray(Image.fromarray(a).resize((256, 256), Image.NEAREST))


def test_no_runs_shows_guidance(open_page, data_root, tmp_path):
    at = open_page("saliency.py", data_root, tmp_path / "empty").run()
    assert not at.exception and any("No evaluated runs" in i.value for i in at.info)


def test_index_shows_that_image_and_its_grad_cam(open_page, data_root, finished_runs, media):
    run = finished_runs[28]
    at = _open(open_page, data_root, run)
    at.selectbox(key="sal_class").set_value(4).run()
    at.number_input(key="sal_index").set_value(7).run()
    at.slider(key="sal_alpha").set_value(0.6).run()
    at.selectbox(key="sal_cmap").set_value("viridis").run()
    assert not at.exception and _shown_index(at) == 7
    data = D.load(data_root, 28)
    image = data.test.images[7]
    shown = _images(at, media)
    (cap0, plain), (cap1, cam) = shown[0], shown[1]
    assert cap0.startswith("Test image 7")
    np.testing.assert_array_equal(plain, np.repeat(_big(image)[..., None], 3, axis=2))
    assert cam.shape == (256, 256, 3)
    model = checkpoints.load_model(run)
    expected = _big(S.overlay(image, S.grad_cam(model, image[None], 4)[0], 0.6, "viridis"))
    assert np.abs(cam.astype(int) - expected.astype(int)).max() <= 1
    scores, labels = R.load_scores(run, "test")
    assert f"p = {scores[7, 4]:.3f}" in cap1 and CLASS_NAMES[4] in cap1
    truth = [CLASS_NAMES[k] for k in np.flatnonzero(labels[7])]
    findings = next(m.value for m in at.markdown if "True findings" in m.value)
    assert all(name in findings for name in truth) and (truth or "none" in findings)
    # The probability chart and this image's deletion/insertion curves.
    assert len(at.get("vega_lite_chart")) == 2
    # Small multiples: one map per true finding of the image, each the overlay of that class's map.
    multiples = [(c, img) for c, img in shown if any(c.startswith(f"{name} · p = ") for name in CLASS_NAMES)]
    by_name = {c.split(" · ")[0]: img for c, img in multiples}
    assert len(multiples) == len(truth) and set(by_name) == set(truth)
    for k in np.flatnonzero(labels[7]):
        want = _big(S.overlay(image, S.grad_cam(model, image[None], int(k))[0], 0.6, "viridis"))
        assert np.abs(by_name[CLASS_NAMES[k]].astype(int) - want.astype(int)).max() <= 1


def test_opacity_and_colour_map_redraw_without_recomputing_grad_cam(open_page, data_root, finished_runs, media,
                                                                   monkeypatch):
    import streamlit as st

    st.cache_data.clear()
    calls = []
    real = S.attribute
    monkeypatch.setattr(S, "attribute", lambda *a, **k: calls.append(a[1][0]) or real(*a, **k))
    at = _open(open_page, data_root, finished_runs[28])
    first = len(calls)
    assert first >= 1

    label = S.METHOD_LABELS["grad-cam"]  # the element-wise weighting, and the page says so where it is picked
    picker = at.selectbox(key="sal_method")
    assert "HiResCAM" in label and label in picker.options and "HiResCAM" in picker.help

    def overlay():
        return next(img for caption, img in _images(at, media) if caption.startswith(label))
    before = overlay()
    at.slider(key="sal_alpha").set_value(0.8).run()
    at.selectbox(key="sal_cmap").set_value("viridis").run()
    assert not at.exception and len(calls) == first  # the maps came from the cache...
    assert not np.array_equal(overlay(), before)  # ...and the overlay was drawn again with the new settings
    at.number_input(key="sal_index").set_value(3).run()
    data = D.load(data_root, 28)
    assert any(np.array_equal(a, data.test.images[3]) for a in calls[first:])  # a new image is a new map


def test_finding_filter_offers_only_positives(open_page, data_root, finished_runs):
    run = finished_runs[28]
    _, labels = R.load_scores(run, "test")
    c = 6
    positives = np.flatnonzero(labels[:, c])
    at = _open(open_page, data_root, run)
    at.selectbox(key="sal_class").set_value(c).run()
    at.radio(key="sal_mode").set_value("Finding").run()
    box = at.number_input(key="sal_pos")
    assert box.max == len(positives) and f"of {len(positives)} positive" in box.label
    shown = []
    for k in (1, 2, len(positives)):
        at.number_input(key="sal_pos").set_value(k).run()
        shown.append(_shown_index(at))
    assert shown == [positives[0], positives[1], positives[-1]]
    assert labels[shown, c].all()


def test_outcome_and_confidence_filters(open_page, data_root, finished_runs):
    run = finished_runs[64]
    scores, labels = R.load_scores(run, "test")
    thr = T.load_thresholds(run / "thresholds.json", CLASS_NAMES)
    c = 0
    at = _open(open_page, data_root, run)
    at.radio(key="sal_mode").set_value("Outcome").run()
    checked = 0
    for outcome, mask in [("FP", (scores[:, c] >= thr[c]) & (labels[:, c] == 0)),
                          ("FN", (scores[:, c] < thr[c]) & (labels[:, c] == 1))]:
        at.radio(key="sal_outcome").set_value(outcome).run()
        if not mask.any():
            assert any("No test image" in i.value for i in at.info)
            continue
        assert at.number_input(key="sal_pos").max == mask.sum()
        at.number_input(key="sal_pos").set_value(int(mask.sum())).run()
        assert _shown_index(at) == np.flatnonzero(mask)[-1]
        checked += 1
    assert checked, "neither FP nor FN exists for this class: the outcome filter was not exercised"
    at.radio(key="sal_mode").set_value("Confidence").run()
    assert _shown_index(at) == int(np.argmax(scores[:, c]))
    at.radio(key="sal_order").set_value("Lowest first").run()
    assert _shown_index(at) == int(np.argmin(scores[:, c]))


def test_side_by_side_one_panel_per_run_with_the_same_test_split(open_page, data_root, runs_copy, tmp_path, media):
    run28, run64 = runs_copy[28], runs_copy[64]
    # A third run on the same data root whose test split differs: not shown side by side.
    odd = run64.parent / (run64.name + "-other")
    shutil.copytree(run64, odd)
    scores, labels = R.load_scores(odd, "test")
    R.save_scores(odd, "test", scores[:-1], labels[:-1])
    at = _open(open_page, data_root, run28)
    at.number_input(key="sal_index").set_value(11).run()
    # The panels: the selected run first (starred), then the other run on this test split; short captions
    # (size · model · p), each run's id in the help of the caption under its panel.
    shown = _images(at, media)
    panels = [(c, img) for c, img in shown if re.fullmatch(r"(★ )?\d+ px · res-cnn · p = \d\.\d{3}", c)]
    s28, _ = R.load_scores(run28, "test")
    s64, _ = R.load_scores(run64, "test")
    assert [cap for cap, _ in panels] == [f"★ 28 px · res-cnn · p = {s28[11, 0]:.3f}",
                                          f"64 px · res-cnn · p = {s64[11, 0]:.3f}"]
    np.testing.assert_array_equal(panels[0][1], shown[1][1])  # the selected run's panel is its Grad-CAM above
    helps = [cap.proto.help for cap in at.caption if cap.value.startswith("threshold ")]
    assert [h.split(".")[0] for h in helps] == [f"Run {run28.name}", f"Run {run64.name}"]
    cap, img = panels[1]
    assert img.shape == (256, 256, 3)
    # The 64 px panel shows the 64 px file's image 11 through the 64 px model.
    image64 = D.load(data_root, 64).test.images[11]
    expected = _big(S.overlay(image64, S.grad_cam(checkpoints.load_model(run64), image64[None], 0)[0], 0.45, "jet"))
    assert np.abs(img.astype(int) - expected.astype(int)).max() <= 1
    assert any(odd.name in c.value for c in at.caption)  # reported as not shown


def test_missing_checkpoint_is_an_error_not_an_exception(open_page, data_root, runs_copy):
    (runs_copy[28] / "best.pt").unlink()
    (runs_copy[64] / "best.pt").unlink()
    at = _open(open_page, data_root, runs_copy[28])
    errors = [e.value for e in at.error]
    assert len(errors) == 2 and all("best.pt" in e for e in errors)
    assert at.subheader[0].value.startswith("Test image") and at.get("vega_lite_chart")  # the rest still shows


def test_changed_data_file_is_an_error(open_page, data_root, runs_copy, tmp_path):
    from tests.synthetic import write_planted

    other_root = tmp_path / "other-data"
    write_planted(other_root, 28, n=(64, 32, 40), seed=3)
    config = R.read_json(runs_copy[28] / "config.json")
    config["train"]["data_root"] = str(other_root)
    R.write_json(runs_copy[28] / "config.json", config)
    at = _open(open_page, data_root, runs_copy[28])
    assert any("Re-evaluate" in e.value for e in at.error)


def test_opens_on_a_true_positive_at_the_saved_thresholds(open_page, data_root, runs_copy):
    """The first image is one the model gets right. Saved thresholds leave one finding, the worst ranked, with
    true positives (every other finding is missed everywhere): the page opens on that finding's most confident
    true positive, not on the first finding or the best ranked one, and says so."""
    run = runs_copy[28]
    scores, labels = R.load_scores(run, "test")
    aucs = {c: v["auc"] for c, v in R.read_test_metrics(run)["per_class"].items() if v.get("auc") is not None}
    k = CLASS_NAMES.index(min(aucs, key=aucs.get))
    thr = np.ones(len(CLASS_NAMES))
    thr[k] = 0.0
    T.save_thresholds(R.user_thresholds_path(run), thr, CLASS_NAMES, method="manual")
    at = _open(open_page, data_root, run, finding=None)
    pos = np.flatnonzero(labels[:, k])
    assert at.selectbox(key="sal_class").value == k and _shown_index(at) == pos[np.argmax(scores[pos, k])]
    assert any(f"Opened on test image {_shown_index(at)}: the most confident true positive for {CLASS_NAMES[k]}"
               in x.value for x in at.caption), [x.value for x in at.caption]
    shown = _shown_index(at)
    at.selectbox(key="run").set_value(runs_copy[64].name).run()  # same finding and image, another run
    assert _shown_index(at) == shown and not any("Opened on" in x.value for x in at.caption), "a claim of another run"


@pytest.mark.parametrize("method", ["occlusion", "integrated-gradients"])
def test_chosen_method_is_the_map_shown(open_page, data_root, finished_runs, media, method):
    run = finished_runs[28]
    at = _open(open_page, data_root, run)
    at.number_input(key="sal_index").set_value(5).run()
    at.selectbox(key="sal_method").set_value(method).run()
    assert not at.exception and not at.error
    image = D.load(data_root, 28).test.images[5]
    cap, img = next((c, i) for c, i in _images(at, media) if c.startswith(S.METHOD_LABELS[method]))
    want = _big(S.overlay(image, S.attribute(checkpoints.load_model(run), image[None], 0, method)[0], 0.45, "jet"))
    assert np.abs(img.astype(int) - want.astype(int)).max() <= 1
    panels = [c for c, _ in _images(at, media) if re.fullmatch(r"(★ )?\d+ px · res-cnn · p = \d\.\d{3}", c)]
    assert len(panels) == 2  # the strip uses the same method (the selected run's panel is the map above)
    assert any(S.METHOD_LABELS[method] in c.value for c in at.caption)


def test_warns_when_the_findings_auc_ci_includes_chance(open_page, data_root, finished_runs):
    from core.metrics import bootstrap_auc_ci

    run = finished_runs[28]
    scores, labels = R.load_scores(run, "test")
    ci = bootstrap_auc_ci(labels, scores, n_boot=300)
    at = _open(open_page, data_root, run)
    seen = set()
    for c in range(D.N_CLASSES):
        at.selectbox(key="sal_class").set_value(c).run()
        warned = any("includes 0.5" in w.value for w in at.warning)
        assert warned == bool(ci[c, 0] <= 0.5), (c, ci[c])
        seen.add(warned)
    assert seen == {True, False}, "the fixture has no class on each side of chance: the check was not exercised"


def test_set_checks_run_on_request(open_page, data_root, finished_runs):
    run = finished_runs[28]
    at = _open(open_page, data_root, run)
    assert not at.dataframe  # nothing computed before the button
    at.slider(key="sal_set_k").set_value(3).run()
    at.button(key="sal_run_checks").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert len(table) >= 3 and list(table.columns) == ["Layers re-initialised", "Spearman ρ"]  # short: they fit
    assert np.isfinite(table.iloc[:, 1]).any()
    assert len(at.get("vega_lite_chart")) == 3  # probability, this image's curves, the set's mean curves


def test_strip_shows_only_the_chosen_runs(open_page, data_root, finished_runs, media):
    at = _open(open_page, data_root, finished_runs[28])
    assert at.multiselect(key="sal_strip").value == [finished_runs[64].name]
    at.multiselect(key="sal_strip").set_value([]).run()
    panels = [c for c, _ in _images(at, media) if re.fullmatch(r"(★ )?\d+ px · res-cnn · p = \d\.\d{3}", c)]
    assert panels and all(p.startswith("★") for p in panels)


def test_strip_default_is_one_run_per_other_size_of_the_closest_kin(tmp_path):
    """Not the first runs of one size (28, 28, 28, 64 px): per other size the run of the same recipe and seed,
    else the same recipe, else any."""
    from core.runs import groups as G

    def run(size: int, seed: int, lr: float = 0.001):
        d = R.new_run_dir(tmp_path, size, "res-cnn")
        R.write_config(d, {"train": {"size": size, "seed": seed, "lr": lr, "model": "res-cnn", "data_root": str(tmp_path)}})
        return d
    me = run(28, 1)
    others = [run(28, 0), run(28, 2), run(64, 0), run(64, 1, lr=0.01), run(64, 1), run(128, 5), run(224, 1, lr=0.01),
              run(224, 0)]
    assert G.one_per_size(me, others) == [str(others[4]), str(others[5]), str(others[7])]
