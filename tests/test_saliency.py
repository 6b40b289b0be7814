"""core.explain.saliency and core.explain.sanity: shapes and range of every method, the pointing game on planted lesions
for every model at 28 px (resnet50's in the bench only), the all-classes shortcut against per-class
calls, the model left as it was, bad input, parameter randomisation, deletion/insertion, and the display overlay."""
import numpy as np
import pytest
import torch
from torch import nn

from core.data import batching
from core.data import chestmnist as D
from core.explain import saliency as S
from core.explain import sanity as Q
from core.metrics import auc_per_class
from core.models.registry import MODELS, build_model, fold_batchnorm
from tests import planted_lesions as PL


def _images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


class BrightSpot(nn.Module):
    """Hand-built: cam_layer fires on bright pixels; class logits are +/- the mean firing.

    Classes with sign +1 see evidence exactly where the image is bright; classes with sign -1
    have only negative evidence, so their ReLU'd Grad-CAM is all zero.
    """

    def __init__(self, signs):
        super().__init__()
        conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.bias.fill_(-0.5)  # input is in [-1, 1]: fires above ~191 grey
        self.cam_layer = nn.Sequential(conv, nn.ReLU())
        self.register_buffer("signs", torch.tensor(signs, dtype=torch.float32))

    def forward(self, x):
        a = self.cam_layer(x).mean(dim=(1, 2, 3))
        return a[:, None] * self.signs[None, :]


@pytest.fixture(scope="module")
def res28():
    torch.manual_seed(0)
    return build_model("res-cnn", 28).eval()


@pytest.mark.parametrize("name,size", [("res-cnn", 28), ("res-cnn", 64), ("seed-cnn", 28), ("seed-cnn", 64)])
def test_shape_dtype_range(name, size):
    torch.manual_seed(1)
    model = build_model(name, size).eval()
    cams = S.grad_cam(model, _images(3, size), 4)
    assert cams.shape == (3, size, size) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0
    for cam in cams:  # min-max normalised: a map with any evidence spans exactly [0, 1]
        assert cam.max() == 0.0 or (cam.min() == 0.0 and cam.max() == pytest.approx(1.0))


def test_per_image_targets_match_single_target_calls(res28):
    images = _images(4, 28, seed=2)
    targets = np.array([0, 5, 5, 13])
    together = S.grad_cam(res28, images, targets)
    for i, t in enumerate(targets):
        np.testing.assert_allclose(together[i], S.grad_cam(res28, images[i:i + 1], int(t))[0], atol=1e-5)


@pytest.mark.parametrize("method", S.METHODS)
def test_bad_inputs_are_refused_with_a_saliency_error(res28, method):
    def call(images, target=0, model=res28):
        return S.attribute(model, images, target, method)
    with pytest.raises(S.SaliencyError, match="uint8"):
        call(_images(2, 28).astype(np.float32))
    with pytest.raises(S.SaliencyError, match="batch"):
        call(_images(1, 28)[0])
    with pytest.raises(S.SaliencyError, match="0..13"):
        call(_images(1, 28), 14)
    with pytest.raises(S.SaliencyError, match="takes 28 x 28"):
        call(_images(1, 64))
    with pytest.raises(S.SaliencyError, match="empty"):
        call(_images(0, 28))

    class NoLayer(nn.Module):
        size = 28

        def forward(self, x):
            return x.mean(dim=(2, 3)).repeat(1, D.N_CLASSES)
    with pytest.raises(S.SaliencyError, match="cam_layer"):
        call(_images(1, 28), model=NoLayer())
    assert issubclass(S.SaliencyError, ValueError)
    with pytest.raises(S.SaliencyError, match="Unknown saliency method"):
        S.attribute(res28, _images(1, 28), 0, "lime")


@pytest.mark.parametrize("method", S.METHODS)
def test_every_method_gives_normalised_maps_and_reports_progress(res28, method):
    done = []
    maps = S.attribute(res28, _images(3, 28, seed=9), [0, 4, 13], method, progress=lambda d, t: done.append((d, t)))
    assert maps.shape == (3, 28, 28) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert done and done[-1] == (3, 3)
    assert _hooks(res28) == 0 and all(p.grad is None for p in res28.parameters())


@pytest.fixture(scope="module")
def lesion28():
    """Planted lesions at 28 px: (test images, labels, trained(name)), each model trained once, on first use."""
    x_test, y_test = PL.lesion_split(300, 28, seed=1)
    models = {}

    def trained(name: str) -> nn.Module:
        if name not in models:
            n, epochs, batch = PL.setup(name, 28)
            models[name] = PL.train_quick(name, *PL.lesion_split(n, 28, seed=0), epochs=epochs, batch=batch)
        return models[name]
    return x_test, y_test, trained


# The ResNets' 28 px games are played by the bench (python -m bench.saliency resnet18:28 resnet50:28), not here:
# resnet50's cheapest passing setup (600 x 4) clears the 90% bar with no image to spare and the bench's 800 x 6
# trains for minutes (docs/saliency.md); resnet18's took 54 s idle and 134 s on a busy machine, the largest
# single test of the suite. The method is held here on the default res-cnn and the study's seed-cnn.
BENCH_ONLY_AT_28 = ("resnet18", "resnet50")


@pytest.mark.parametrize("name", [n for n in MODELS if n not in BENCH_ONLY_AT_28])
def test_pointing_game_at_28_px(lesion28, name):
    """The peak of each single-finding test image's Grad-CAM lies in its lesion's cell (1 of 16) in >= 90%
    of images, for a model whose test AUC is above 0.95."""
    x, y, trained = lesion28
    model = trained(name)
    auc = np.nanmean(auc_per_class(y, PL.predict(model, x)))
    assert auc > 0.95, f"{name} did not learn the lesions (AUC {auc:.3f}): the game would mean nothing"
    rows, cls = PL.single_finding(y)
    assert len(rows) >= 50
    hits = PL.pointing_hits(S.grad_cam(model, x[rows], cls), cls)
    assert hits.mean() >= 0.9, f"{name}: peak in the lesion's cell for {hits.mean():.0%} of {len(rows)} images"


def test_cam_layer_is_declared_and_follows_the_batchnorm_fold():
    for name in MODELS:
        for size in (28, 224):
            model = build_model(name, size)
            assert isinstance(model.cam_layer, nn.Module) and model.size == size
            assert any(m is model.cam_layer for m in model.modules())
            folded = fold_batchnorm(model)
            assert any(m is folded.cam_layer for m in folded.modules())
            assert not any(k.startswith("cam_layer.") for k in model.state_dict())


def test_checkpoint_with_the_old_cam_alias_still_loads():
    torch.manual_seed(0)
    model = build_model("res-cnn", 28)
    state = model.state_dict()
    old = dict(state, **{f"cam_layer.{k.split('.', 3)[-1]}": v for k, v in state.items()
                         if k.startswith("stages.3.body.3.")})  # the alias a saved checkpoint carried
    fresh = build_model("res-cnn", 28)
    fresh.load_state_dict(old)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.random((3, 6, 6)), rng.random((3, 6, 6))
    b[1] = a[1] ** 2  # monotone: rho 1
    got = Q.spearman(a, b)
    want = [spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[1] == pytest.approx(1.0)
    assert np.isnan(Q.spearman(a[:1], np.zeros((1, 6, 6))))[0]


def test_randomisation_cascade_decorrelates_grad_cam_and_leaves_the_model(lesion28):
    x, y, trained = lesion28
    model = trained("res-cnn")
    rows, cls = PL.single_finding(y)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    r = Q.randomisation(model, x[rows[:8]], cls[:8], "grad-cam", max_steps=4, progress=lambda d, t: steps.append(d))
    assert len(r.layers) == r.rho.shape[0] <= 4 and r.rho.shape[1] == 8 and steps[-1] == len(r.layers) + 1
    assert "head" in r.layers[0] and "stem" in r.layers[-1]
    assert abs(np.nanmean(r.rho[-1])) < 0.5, r.mean()  # every weight random: maps unlike the trained ones
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_deletion_and_insertion_beat_random_order_for_grad_cam(lesion28):
    x, y, trained = lesion28
    model = trained("res-cnn")
    rows, cls = PL.single_finding(y)
    images, classes = x[rows[:12]], cls[:12]
    f = Q.faithfulness(model, images, classes, S.grad_cam(model, images, classes), steps=10)
    assert f.deletion.shape == f.insertion.shape == (12, 11) and f.fractions[[0, -1]].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(f.deletion[:, 0], PL.predict(model, images)[np.arange(12), classes], atol=1e-5)
    np.testing.assert_allclose(f.deletion[:, -1], f.insertion[:, 0], atol=1e-6)  # both all mean grey
    assert f.auc("deletion").mean() < f.auc("random_deletion").mean()
    assert f.auc("insertion").mean() > f.auc("random_insertion").mean()
    with pytest.raises(S.SaliencyError, match="match"):
        Q.faithfulness(model, images, classes, np.zeros((12, 14, 14)))


def test_map_follows_the_evidence_and_negative_evidence_gives_zero_not_nan():
    model = BrightSpot([1.0] * 7 + [-1.0] * 7).eval()
    image = np.zeros((28, 28), np.uint8)
    image[5:10, 18:24] = 255
    cams = S.grad_cam(model, np.stack([image, image]), [0, 9])
    inside = np.zeros((28, 28), bool)
    inside[5:10, 18:24] = True
    assert cams[0][inside].min() > 0.5 and cams[0][~inside].max() < 0.5
    assert np.unravel_index(cams[0].argmax(), cams[0].shape) in set(zip(*np.nonzero(inside)))
    assert not cams[1].any()  # class 9 only has negative evidence: all zero, no NaN
    all_classes = S.grad_cam_all_classes(model, image)
    assert np.isfinite(all_classes).all() and not all_classes[7:].any()
    np.testing.assert_allclose(all_classes[0], cams[0], atol=1e-6)


def _planted(n, rng, square):
    """Noise images; about half carry a bright square at `square` (rows, cols) = class 2."""
    images = rng.integers(40, 140, (n, 28, 28)).astype(np.uint8)
    labels = np.zeros((n, D.N_CLASSES), np.uint8)
    labels[:, 2] = rng.random(n) < 0.5
    images[labels[:, 2] == 1, square[0], square[1]] = 250
    return images, labels


def test_trained_model_looks_at_the_planted_square():
    """seed-cnn (cam_layer at 14x14 for 28 px) trained briefly, channels_last like core.train, where
    class 2 = bright square at a fixed spot: its Grad-CAM for class 2 lies mostly inside the square."""
    rng = np.random.default_rng(0)
    square = (slice(3, 11), slice(15, 23))  # 8x8 of 28x28: 8% of the image
    images, labels = _planted(384, rng, square)
    torch.manual_seed(0)
    model = build_model("seed-cnn", 28).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(15):
        idx = rng.choice(len(images), 48, replace=False)
        loss = loss_fn(model(batching.to_tensor(images[idx], channels_last=True)),
                       torch.from_numpy(labels[idx].astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_images, test_labels = _planted(64, np.random.default_rng(1), square)
    with torch.no_grad():
        prob = torch.sigmoid(model(batching.to_tensor(test_images, channels_last=True)))[:, 2].numpy()
    pos = test_labels[:, 2] == 1
    assert prob[pos].min() > prob[~pos].max(), "the model did not learn the planted square"

    cams = S.grad_cam(model, test_images[pos], 2)
    inside = np.zeros((28, 28), bool)
    inside[square] = True
    share = cams[:, inside].sum(axis=1) / cams.sum(axis=(1, 2))
    assert share.min() > 0.4, f"CAM mass inside the square: min {share.min():.2f} (its area share is 0.08)"
    peaks = np.unravel_index(cams.reshape(len(cams), -1).argmax(axis=1), (28, 28))
    assert inside[peaks].all()


def test_channels_last_model_gives_the_same_maps():
    torch.manual_seed(4)
    plain = build_model("res-cnn", 64).eval()
    cl = build_model("res-cnn", 64).to(memory_format=torch.channels_last).eval()
    cl.load_state_dict(plain.state_dict())
    images = _images(3, 64, seed=7)
    np.testing.assert_allclose(S.grad_cam(cl, images, [1, 2, 3]), S.grad_cam(plain, images, [1, 2, 3]), atol=1e-4)
    np.testing.assert_allclose(S.grad_cam_all_classes(cl, images[0]), S.grad_cam_all_classes(plain, images[0]),
                               atol=1e-4)


@pytest.mark.parametrize("name,size", [("res-cnn", 28), ("res-cnn", 64), ("seed-cnn", 28), ("seed-cnn", 64)])
def test_all_classes_equals_per_class_calls_with_one_forward_pass(name, size):
    torch.manual_seed(3)
    model = build_model(name, size).eval()
    image = _images(1, size, seed=5)[0]
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    all_classes = S.grad_cam_all_classes(model, image)
    handle.remove()
    assert len(calls) == 1
    assert all_classes.shape == (D.N_CLASSES, size, size) and all_classes.dtype == np.float32
    per_class = np.stack([S.grad_cam(model, image[None], c)[0] for c in range(D.N_CLASSES)])
    np.testing.assert_allclose(all_classes, per_class, atol=1e-5)


def test_model_is_left_as_it_was(res28):
    images = _images(2, 28)
    before = {k: v.clone() for k, v in res28.state_dict().items()}
    S.grad_cam(res28, images, 1)
    S.grad_cam_all_classes(res28, images[0])
    assert _hooks(res28) == 0
    assert not res28.training and all(p.grad is None for p in res28.parameters())
    assert all(torch.equal(before[k], v) for k, v in res28.state_dict().items())  # BN stats untouched (eval)
    # A model handed over in train mode is computed in eval mode and handed back in train mode.
    res28.train()
    try:
        np.testing.assert_allclose(S.grad_cam(res28, images, 1), S.grad_cam(res28.eval(), images, 1), atol=1e-6)
        res28.train()
        S.grad_cam_all_classes(res28, images[0])
        assert res28.training and _hooks(res28) == 0
    finally:
        res28.eval()


def test_thread_count_is_restored(res28):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        S.grad_cam(res28, _images(1, 28), 0)  # small: computed on one thread
        assert torch.get_num_threads() == 2
        S.grad_cam_all_classes(res28, _images(1, 28)[0])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_one_thread_on_one_thread_leaves_another_threads_count_alone():
    """The single-thread borrow is the calling thread's: a thread computing beside it keeps its count."""
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen, inside, leave = [], threading.Event(), threading.Event()

    def other():
        torch.set_num_threads(2)
        torch.get_num_threads()  # this thread has used torch (a thread that has not inherits the default)
        inside.wait(10)
        seen.append(torch.get_num_threads())
        leave.set()
    try:
        t = threading.Thread(target=other)
        t.start()
        with S.one_intra_op_thread():
            assert torch.get_num_threads() == 1
            inside.set()
            leave.wait(10)
        t.join(10)
        assert seen == [2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_maps_of_different_models_do_not_wait_for_each_other(res28):
    """The lock is the model's: another model's map is computed while this one is held (a module-wide lock
    made every session's saliency wait for every other's)."""
    import threading

    other = build_model("res-cnn", 28).eval()
    done = threading.Event()
    with S._model_lock(res28):
        t = threading.Thread(target=lambda: (S.grad_cam(other, _images(1, 28), 0), done.set()))
        t.start()
        assert done.wait(60), "a map of another model waited for this model's lock"
    t.join()


def test_works_under_no_grad(res28):
    images = _images(1, 28)
    expected = S.grad_cam(res28, images, 3)
    with torch.no_grad():
        np.testing.assert_allclose(S.grad_cam(res28, images, 3), expected, atol=1e-6)
        np.testing.assert_allclose(S.grad_cam_all_classes(res28, images[0])[3], expected[0], atol=1e-5)


def test_overlay_blends_image_and_colour_map():
    import matplotlib

    image = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    cam = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    out = S.overlay(image, cam, alpha=0.4, cmap="inferno")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(S.overlay(image, cam, alpha=0.0), np.repeat(image[..., None], 3, axis=2))
    colour = np.rint(matplotlib.colormaps["inferno"](cam)[..., :3] * 255)
    np.testing.assert_allclose(S.overlay(image, cam, alpha=1.0, cmap="inferno"), colour, atol=1)
    mid = 0.6 * image[..., None] + 0.4 * colour
    np.testing.assert_allclose(out, mid, atol=1.01)
    with pytest.raises(ValueError, match="colour map"):
        S.overlay(image, cam, cmap="no-such-map")
    with pytest.raises(ValueError, match="same size"):
        S.overlay(image, cam[:8])
