"""core.models: output shapes at every size, Grad-CAM layer, cost accounting."""
from __future__ import annotations

import pytest
import torch

from core.models import MODELS, build_model, count_params, describe, flops_per_image, fold_batchnorm


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", [28, 64, 128, 224])
def test_every_model_maps_images_to_14_logits(name, size):
    model = build_model(name, size).eval()
    maps = []
    handle = model.cam_layer.register_forward_hook(lambda _m, _i, out: maps.append(out.shape))
    with torch.no_grad():
        assert model(torch.zeros(2, 1, size, size)).shape == (2, 14)
    handle.remove()
    assert len(maps) == 1 and len(maps[0]) == 4 and maps[0][0] == 2  # cam_layer: a module giving a feature map


def test_default_model_cost_grows_slower_than_pixels():
    flops = {s: describe("res-cnn", s)["flops"] for s in (28, 64, 224)}
    assert flops[224] <= 4 * flops[64]  # pixels grow 12x
    # Global pooling: the parameter count does not depend on the input size.
    assert abs(describe("res-cnn", 224)["params"] - describe("res-cnn", 64)["params"]) < 0.01 * describe("res-cnn", 64)["params"]


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
