"""core.models: output shapes at every size, Grad-CAM layer, cost accounting."""
from __future__ import annotations

import pytest
import torch

from core.models.registry import MODELS, VARIANTS, build_model, count_params, describe, flops_per_image, fold_batchnorm


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", [28, 64, 128, 224])
def test_every_model_maps_images_to_14_logits(name, size):
    model = build_model(name, size).eval()
    seen = []
    model.cam_layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        assert model(torch.zeros(2, 1, size, size)).shape == (2, 14)
    # Grad-CAM's layer runs once and gives a spatial feature map
    assert len(seen) == 1 and len(seen[0]) == 4 and seen[0][0] == 2 and seen[0][2] > 1


def test_default_model_cost_grows_slower_than_pixels():
    flops = {s: describe("res-cnn", s)["flops"] for s in (28, 64, 224)}
    assert flops[224] <= 4 * flops[64]  # pixels grow 12x
    # Global pooling: the parameter count does not depend on the input size.
    assert abs(describe("res-cnn", 224)["params"] - describe("res-cnn", 64)["params"]) < 0.01 * describe("res-cnn", 64)["params"]


@pytest.mark.parametrize("size", [28, 64])
def test_study_variants_change_one_thing_of_res_cnn(size):
    base = describe("res-cnn", size)
    cost = {name: describe(name, size) for name in VARIANTS}
    for name, c in cost.items():  # every variant trains like a model: 14 logits, a Grad-CAM layer
        model = build_model(name, size).eval()
        with torch.no_grad():
            assert model(torch.zeros(2, 1, size, size)).shape == (2, 14) and model.cam_layer is model.stages[0]
    # Half the widths: about a quarter of the FLOPs; one stage fewer: fewer parameters; one more
    # strided stem step: the stages see a quarter of the pixels, with the same parameters.
    assert 0.2 * base["flops"] < cost["res-cnn-narrow"]["flops"] < 0.3 * base["flops"]
    assert cost["res-cnn-wide"]["flops"] > 1.5 * base["flops"]
    assert cost["res-cnn-3stage"]["params"] < 0.3 * base["params"]
    assert cost["res-cnn-fast-stem"]["flops"] < 0.3 * base["flops"]
    assert abs(cost["res-cnn-fast-stem"]["params"] - base["params"]) < 0.01 * base["params"]
    assert cost["res-cnn-drop0"] == cost["res-cnn-drop0.5"] == base
    drops = {name: [m.p for m in build_model(name, size).modules() if isinstance(m, torch.nn.Dropout)]
             for name in ("res-cnn", "res-cnn-drop0", "res-cnn-drop0.5")}
    assert drops == {"res-cnn": [0.2], "res-cnn-drop0": [0.0], "res-cnn-drop0.5": [0.5]}
    assert not set(VARIANTS) & set(MODELS)  # the app offers MODELS only


def test_seed_cnn_head_grows_with_resolution_as_in_the_study():
    assert describe("seed-cnn", 64)["params"] > 4 * describe("seed-cnn", 28)["params"]


def test_flop_count_matches_a_hand_count():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False))
    assert flops_per_image(model, 28) == 2 * 28 * 28 * 4 * 9
    assert count_params(model) == 36


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="res-cnn"):
        build_model("resnet-9000", 28)


@pytest.mark.parametrize("name", list(MODELS))
def test_hook_flop_count_agrees_with_torch_flop_counter(name):
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name, 64).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, 64, 64))
    assert flops_per_image(model, 64) == counter.get_total_flops()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", [28, 64])
def test_folding_batchnorm_keeps_the_outputs_and_leaves_the_model_alone(name, size):
    torch.manual_seed(size)
    model = build_model(name, size)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # trained-looking statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not folded.training and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # aliases follow the fold: Grad-CAM's layer is the (fused) conv that runs in forward
    fired = []
    folded.cam_layer.register_forward_hook(lambda *_: fired.append(1))
    x = torch.randn(4, 1, size, size)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), atol=1e-4, rtol=1e-4)
    assert fired == [1]


# torchvision's resnet18 / resnet50 (3 input channels, 1000 classes) have 11,689,512 / 25,557,032
# parameters. One input channel removes 2 x 64 x 7 x 7 = 6,272 stem weights; 14 classes instead of
# 1000 remove 986 x (512 + 1) = 505,818 head parameters (986 x (2048 + 1) = 2,020,314 for resnet50);
# the 28 px 3x3 stem has 64 x 9 = 576 stem weights instead of 64 x 49 = 3,136.
TORCHVISION_PARAMS = {"resnet18": (11_689_512, 512), "resnet50": (25_557_032, 2048)}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_reference_resnets_have_torchvisions_parameter_count_for_one_channel_and_14_classes(name):
    total, features = TORCHVISION_PARAMS[name]
    large = total - 2 * 64 * 7 * 7 - (1000 - 14) * (features + 1)
    assert describe(name, 64)["params"] == describe(name, 224)["params"] == large
    assert describe(name, 28)["params"] == large - 64 * 49 + 64 * 9
    assert (large, large - 2560) == {"resnet18": (11_177_422, 11_174_862), "resnet50": (23_530_446, 23_527_886)}[name]


def test_resnet_stems_follow_medmnist():
    small, large = build_model("resnet18", 28), build_model("resnet18", 224)
    conv = small.stem[0]
    assert (conv.kernel_size, conv.stride) == ((3, 3), (1, 1)) and not any(
        isinstance(m, torch.nn.MaxPool2d) for m in small.modules())
    conv = large.stem[0]
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (2, 2), (3, 3))
    assert isinstance(large.stem[-1], torch.nn.MaxPool2d)
    shapes = []
    large.cam_layer.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        large.eval()(torch.zeros(1, 1, 224, 224))
    assert shapes == [(1, 64, 56, 56)]  # cam_layer is layer1: 224 / 4, as torchvision's layer1


def test_resnet18_flops_at_28_px_match_a_hand_count():
    macs = 28 * 28 * 64 * 9  # stem, stride 1
    macs += 4 * 28 * 28 * 64 * 64 * 9  # layer1: two blocks of two 3x3 convs at 28 x 28
    for cin, cout, side in ((64, 128, 14), (128, 256, 7), (256, 512, 4)):  # strided stages
        macs += side * side * cout * (cin * 9 + 3 * cout * 9 + cin)  # first conv, three more, 1x1 projection
    macs += 512 * 14
    assert flops_per_image(build_model("resnet18", 28), 28) == 2 * macs
