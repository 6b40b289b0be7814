"""core.train.autotune: precision and layout chosen by measurement, cached per machine, never trusted when
stale or damaged; `--amp auto` and predict follow it, a manual `--amp` wins.

The real timing path runs on tiny batches (its figures are meaningless, its wiring is not); the
decision rules and the cache are tested with planted speeds, so their outcome is known."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import env
from core.train import autotune as A
from core.models.registry import build_model
from core.train.recipe import TrainConfig
from core.train.device import amp_dtype, train_layout
from core.train.__main__ import main

CPU = torch.device("cpu")


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Measuring on (the suite turns it off), with a cache of this test's own."""
    monkeypatch.setenv(env.AUTOTUNE, "on")
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def plant_speeds(monkeypatch, speeds: dict[str, float], losses: dict[str, float] | None = None) -> list:
    """measure_train returns these speeds (and first losses, default all equal); the list records calls."""
    calls = []

    def fake(model_name, size, batch_size, device, candidates, weight_decay=0.0):
        calls.append([c.name for c in candidates] + (["adamw"] if weight_decay > 0 else []))
        names = [c.name for c in candidates]
        return ({k: speeds[k] for k in names}, {k: (losses or {}).get(k, 0.69) for k in names})
    monkeypatch.setattr(A, "measure_train", fake)
    return calls


# ---------------------------------------------------------------- the real measurement


def test_real_measurement_is_cached_and_reused(measuring):
    d = A.choose_train("res-cnn", 28, 4, CPU, cpu_bf16=True)
    assert d.how == "measured" and d.seconds > 0
    assert set(d.speeds) == {"fp32_nchw", "fp32_cl", "bf16_nchw", "bf16_cl"}
    assert all(v > 0 for v in d.speeds.values())
    assert d.name in d.speeds and d.speeds[d.name] >= max(v for k, v in d.speeds.items() if k.startswith("fp32"))
    entry = json.loads(A.cache_path().read_text())
    # Our workload's entry (a Train-page speed thread left by an earlier AppTest may add its own).
    assert entry["format_version"] == A.FORMAT_VERSION
    assert json.dumps(d.key, sort_keys=True, separators=(",", ":")) in entry["entries"]
    again = A.choose_train("res-cnn", 28, 4, CPU, cpu_bf16=True)
    assert again.how == "cached" and again.seconds == 0
    assert (again.amp, again.channels_last, again.speeds) == (d.amp, d.channels_last, pytest.approx(d.speeds))
    # the first steps' losses compared, from the same weights, batch and dropout masks
    assert "left out" not in d.reason


def test_another_workload_is_measured_on_its_own(measuring, monkeypatch):
    calls = plant_speeds(monkeypatch, {"fp32_nchw": 100.0, "fp32_cl": 150.0, "bf16_nchw": 90.0, "bf16_cl": 300.0})
    for size, batch in ((28, 128), (64, 128), (28, 64), (28, 128)):
        A.choose_train("res-cnn", size, batch, CPU, cpu_bf16=True)
    A.choose_train("seed-cnn", 28, 128, CPU, cpu_bf16=True)
    assert len(calls) == 4 and len(json.loads(A.cache_path().read_text())["entries"]) == 4


def test_real_inference_measurement_leaves_the_model_alone(measuring):
    model = build_model("res-cnn", 28).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = A.choose_infer(model, 28, 8, CPU)
    assert d.how == "measured" and d.amp == "off"
    assert set(d.speeds) == {"fp32_nchw", "fp32_cl", "folded_fp32_nchw", "folded_fp32_cl"}
    assert d.speeds[d.name] == max(d.speeds.values())
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert A.choose_infer(model, 28, 8, CPU).how == "cached"


def test_without_native_bf16_bf16_is_not_tried(measuring, monkeypatch):
    calls = plant_speeds(monkeypatch, {"fp32_nchw": 100.0, "fp32_cl": 150.0})
    d = A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=False)
    assert calls == [["fp32_nchw", "fp32_cl"]]
    assert (d.amp, d.channels_last) == ("off", True) and "bf16 was not tried" in d.reason


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize("bf16_cl, want", [
    (0.85 * 150, "fp32_cl"),  # the Intel Xeon case: bf16 slower than fp32 channels_last
    (1.02 * 150, "fp32_cl"),  # faster, but by less than the margin
    (2.0 * 150, "bf16_cl"),  # the AMD EPYC case
])
def test_the_fastest_is_kept_and_low_precision_needs_the_margin(measuring, monkeypatch, bf16_cl, want):
    plant_speeds(monkeypatch, {"fp32_nchw": 100.0, "fp32_cl": 150.0, "bf16_nchw": 90.0, "bf16_cl": bf16_cl})
    d = A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True)
    assert d.name == want and d.how == "measured"
    assert f"{bf16_cl / 150:.2f}x" in d.describe()


def test_low_precision_whose_loss_disagrees_with_fp32_is_left_out(measuring, monkeypatch):
    plant_speeds(monkeypatch, {"fp32_nchw": 100.0, "fp32_cl": 150.0, "bf16_nchw": 90.0, "bf16_cl": 400.0},
                 {"fp32_cl": 0.69, "bf16_cl": 0.80})
    d = A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True)
    assert d.name == "fp32_cl" and "bf16_cl left out" in d.reason


# ---------------------------------------------------------------- the cache is never trusted blindly


def _measured_once(monkeypatch) -> list:
    calls = plant_speeds(monkeypatch, {"fp32_nchw": 100.0, "fp32_cl": 150.0, "bf16_nchw": 90.0, "bf16_cl": 300.0})
    assert A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True).how == "measured"
    assert A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True).how == "cached"
    assert len(calls) == 1
    return calls


def _rewrite(edit) -> None:
    doc = json.loads(A.cache_path().read_text())
    edit(doc)
    A.cache_path().write_text(json.dumps(doc))


def _only_entry(doc: dict) -> dict:
    (entry,) = doc["entries"].values()
    return entry


@pytest.mark.parametrize("damage", [
    "not json {",
    "",
    json.dumps([1, 2, 3]),
    json.dumps({"format_version": A.FORMAT_VERSION, "entries": "nope"}),
])
def test_a_corrupt_cache_is_measured_again_and_rewritten(measuring, monkeypatch, damage):
    calls = _measured_once(monkeypatch)
    A.cache_path().write_text(damage)
    d = A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True)
    assert d.how == "measured" and len(calls) == 2 and d.name == "bf16_cl"
    assert A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True).how == "cached"


@pytest.mark.parametrize("edit", [
    lambda doc: doc.update(format_version=A.FORMAT_VERSION - 1),  # older file format
    lambda doc: _only_entry(doc)["key"].update(torch="1.0.0"),  # written under another torch
    lambda doc: _only_entry(doc)["key"].update(cpu="Some Other CPU", threads=64),  # another machine
    lambda doc: _only_entry(doc).update(amp="fp16"),  # a choice that is not a candidate here
    lambda doc: _only_entry(doc).update(speeds={"bf16_cl": -1}),  # nonsense speeds
    lambda doc: _only_entry(doc).pop("channels_last"),  # a field missing
])
def test_a_stale_or_tampered_entry_is_measured_again(measuring, monkeypatch, edit):
    calls = _measured_once(monkeypatch)
    _rewrite(edit)
    assert A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True).how == "measured" and len(calls) == 2


def test_the_key_names_the_machine(measuring):
    key = A.machine_key(CPU)
    assert key["torch"] == torch.__version__ and key["threads"] == torch.get_num_threads()
    assert key["cpu"] and key["cpus"] >= 1 and key["format"] == A.FORMAT_VERSION


# ---------------------------------------------------------------- core follows the decision


def test_amp_auto_follows_the_measured_choice_and_manual_amp_wins(measuring, monkeypatch):
    plant_speeds(monkeypatch, {"fp32_nchw": 300.0, "fp32_cl": 150.0, "bf16_nchw": 90.0, "bf16_cl": 200.0})
    native = amp_dtype(TrainConfig(amp="bf16"), CPU)  # manual: no measuring, whatever the machine
    assert native is torch.bfloat16 and not A.cache_path().exists()
    auto = TrainConfig(size=28)
    assert amp_dtype(auto, CPU) is None and train_layout(auto, CPU) is False  # fp32 NCHW measured fastest
    assert amp_dtype(TrainConfig(amp="off"), CPU) is None and train_layout(TrainConfig(amp="off"), CPU) is True
    assert train_layout(TrainConfig(channels_last=False), CPU) is False


def test_fixed_rule_when_measuring_is_off_or_distributed(monkeypatch, tmp_path):
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path))
    from core.train.device import cpu_has_bf16
    for variables in ({env.AUTOTUNE: "off"}, {env.AUTOTUNE: "on", "WORLD_SIZE": "2"}):
        for k, v in variables.items():
            monkeypatch.setenv(k, v)
        d = A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=cpu_has_bf16())
        assert d.how == "fixed rule" and d.amp == ("bf16" if cpu_has_bf16() else "off") and d.channels_last
        assert A.choose_infer(build_model("res-cnn", 28), 28, 256, CPU).fold_bn
    assert not (tmp_path / A.FILE_NAME).exists()


def test_predict_uses_the_measured_inference_layout(measuring, monkeypatch):
    from core.evaluate.scoring import predict

    def fake(model, size, batch_size, device, candidates):
        return {c.name: (500.0 if c.name == "fp32_nchw" else 100.0) for c in candidates}
    monkeypatch.setattr(A, "measure_infer", fake)
    torch.manual_seed(0)
    model = build_model("res-cnn", 28).to(memory_format=torch.channels_last).train()
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    got = predict(model, images)
    assert A.choose_infer(model, 28, 256, CPU).name == "fp32_nchw"
    np.testing.assert_allclose(got, predict(model, images, channels_last=False, fold_bn=True), atol=1e-5)
    assert model.training  # a copy ran: unfolded, but not the caller's model put in eval mode


def test_device_check_reports_the_choice_and_the_speeds(measuring, monkeypatch, capsys):
    plant_speeds(monkeypatch, {"fp32_nchw": 100.0, "fp32_cl": 150.0, "bf16_nchw": 90.0, "bf16_cl": 300.0})
    monkeypatch.setattr(A, "measure_infer", lambda m, s, b, d, cands: {c.name: 10.0 + i for i, c in enumerate(cands)})
    monkeypatch.setattr("core.train.device.cpu_has_bf16", lambda: True)
    assert main(["--device", "check", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "--amp auto for res-cnn at 64 px, batch 128: bfloat16, channels_last" in out
    assert "train: bf16_cl" in out and "bf16_cl 300" in out and "fp32_cl 150" in out and "2.00x" in out
    assert "infer: folded_fp32_cl" in out and str(A.cache_path()) in out


# ---------------------------------------------------------------- GPU


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_candidates_are_measured(measuring):
    dev = torch.device("cuda")
    d = A.choose_train("res-cnn", 28, 32, dev, cpu_bf16=False)
    want = {"fp32_nchw", "fp32_cl", "fp16_nchw", "fp16_cl"} | (
        {"bf16_nchw", "bf16_cl"} if torch.cuda.is_bf16_supported() else set())
    assert d.how == "measured" and set(d.speeds) == want and d.key["gpu"] == torch.cuda.get_device_name(dev)
    assert A.choose_train("res-cnn", 28, 32, dev, cpu_bf16=False).how == "cached"
    i = A.choose_infer(build_model("res-cnn", 28).to(dev), 28, 64, dev)
    assert i.how == "measured" and i.amp == "off" and i.speeds[i.name] == max(i.speeds.values())


@cuda
def test_cuda_training_runs_in_the_measured_choice(measuring):
    dev = torch.device("cuda")
    cfg = TrainConfig(size=28, batch_size=32)
    choice = A.choose_train(cfg.model, 28, 32, dev, cpu_bf16=False)
    assert amp_dtype(cfg, dev) == choice.dtype and train_layout(cfg, dev) == choice.channels_last


def test_adamw_runs_are_timed_with_adamw_and_cached_apart(measuring, monkeypatch):
    """autotune once hard-coded Adam, so a run with weight decay was timed with another optimizer (issue #26)."""
    calls = plant_speeds(monkeypatch, {"fp32_nchw": 100.0, "fp32_cl": 120.0, "bf16_nchw": 90.0, "bf16_cl": 95.0})
    A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True)
    A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True, weight_decay=0.05)
    assert A.choose_train("res-cnn", 28, 128, CPU, cpu_bf16=True, weight_decay=0.05).how == "cached"
    assert [c[-1] == "adamw" for c in calls] == [False, True]


def test_the_timed_step_uses_the_runs_optimizer(monkeypatch):
    """measure_train builds its parts as the loop does (core.train.step.build_parts), AdamW included."""
    from core.train import step
    built = []
    real = step.build_parts
    monkeypatch.setattr(A, "build_parts", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    monkeypatch.setattr(A, "time_interleaved", lambda fns, device: {k: (fn(), 1.0)[1] for k, fn in fns.items()})
    A.measure_train("seed-cnn", 28, 4, CPU, [A.Candidate("off", False, False)], weight_decay=0.05)
    assert type(built[0].optimizer).__name__ == "AdamW"
    A.measure_train("seed-cnn", 28, 4, CPU, [A.Candidate("off", False, False)])
    assert type(built[1].optimizer).__name__ == "Adam"
