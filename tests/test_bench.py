"""The benchmark code on tiny inputs, so it cannot rot: every benchmark function returns its figures
with the expected keys and sane values (positive, finite), candidates compute what they replace,
and the CLI prints a table and ends with one parseable JSON line. No timed assertions: speed is
what `python -m bench` reports, not what tests check."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from argparse import Namespace

import numpy as np
import pytest
import torch

from bench import autotune, common, compute, efficiency, export, interaction, memory, pipeline, saliency, stats
from bench.common import MODES, Context, RunCache
from core import env
from core.data import batching
from core.data import chestmnist as D
from core.data import npz

TINY = MODES["tiny"]
FAST = dataclasses.replace(TINY, repeats=1, warmup=0, compute_batch=8)  # code paths, not timings
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _sane(figs: dict, keys: list[str]) -> None:
    missing = [k for k in keys if k not in figs]
    assert not missing, f"missing figures {missing}; got {sorted(figs)}"
    for k in keys:
        v = figs[k]
        assert isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, (k, v)


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(mode=TINY, workdir=tmp_path, runs=RunCache(tmp_path), log=lambda _m: None, nih=None)


# ---------------------------------------------------------------- pipeline


def test_medmnist_example_transform_matches_core_normalisation():
    images, labels = common.random_split(5, 28)
    ds = pipeline.medmnist_dataset(images, labels, pipeline.medmnist_transform())
    assert len(ds) == 5
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert y.dtype.kind == "i" and y.tolist() == labels[3].tolist()
    # ToTensor + Normalize(.5, .5) and core.data.batching.to_tensor map uint8 to the same [-1, 1] floats
    torch.testing.assert_close(x, batching.to_tensor(images[3:4])[0], atol=1e-6, rtol=0)
    batch_x, batch_y = next(iter(pipeline.medmnist_loader(images, labels, batch_size=4)))
    assert batch_x.shape == (4, 1, 28, 28) and batch_y.shape == (4, 14)


def test_bench_pipeline_figures():
    figs = pipeline.bench_pipeline(28, FAST, batch_size=8, threads=1)
    other = pipeline.other_precision(common.core_choice(28, 8).dtype)[1]
    _sane(figs, [f"pipeline.28.{k}" for k in ("medmnist_img_s", "medmnist_loader_img_s", "core_img_s", "compute_img_s",
                                                  f"{other}_img_s", "loader_medmnist_ms", "loader_core_ms",
                                                  "loader_core_numpy_ms")])
    assert all(v > 0 for v in figs.values())


def test_bench_pipeline_compiled_row(monkeypatch, ctx):
    """The compiled-training variant runs only where compile is on and at default threads, and its row
    compares it with the eager step on the same tensors (torch.compile stubbed: the wiring, not inductor)."""
    compiled = []
    monkeypatch.setattr(pipeline.torch, "compile", lambda m, **kw: compiled.append(kw) or m)
    assert "pipeline.28.compute_compiled_img_s" not in pipeline.bench_pipeline(28, dataclasses.replace(FAST, compile=True),
                                                                               batch_size=8, threads=1)
    figs = pipeline.bench_pipeline(28, dataclasses.replace(FAST, compile=True), batch_size=8)
    assert compiled == [{"dynamic": False}]
    _sane(figs, ["pipeline.28.compute_compiled_img_s", "pipeline.28.compute_compiled_compile_s"])
    row = next(r for r in pipeline._rows(ctx, 28, figs, "") if r.name == "pipeline.28.compute_compiled_vs_compute")
    assert row.ratio == pytest.approx(figs["pipeline.28.compute_compiled_img_s"] / figs["pipeline.28.compute_img_s"])
    assert row.passed is None and "compiling took" in row.note


@pytest.mark.parametrize("size", [28, 64, 224])
def test_numpy_normalisation_candidate_is_bit_identical(size):
    images = np.random.default_rng(size).integers(0, 256, (5, size, size), dtype=np.uint8)
    for cl in (False, True):
        got, want = pipeline.numpy_to_tensor(images, cl), batching.to_tensor(images, "cpu", cl)
        assert torch.equal(got, want) and got.stride() == want.stride()


# ---------------------------------------------------------------- compute


def test_bench_train_and_infer_figures():
    _sane(compute.bench_train(28, FAST), [f"compute.28.train.{v}_{k}" for v in compute.TRAIN_VARIANTS
                                          for k in ("img_s", "best_img_s")])
    figs = compute.bench_infer(28, FAST, compile_=False)
    _sane(figs, [f"compute.28.infer.{v}_{k}" for v in compute.INFER_VARIANTS for k in ("img_s", "best_img_s")])
    before = torch.get_num_threads()
    one = compute.bench_train(28, FAST, variants=compute.HW_VARIANTS, threads=1)
    assert torch.get_num_threads() == before
    _sane(one, [f"compute.28.train_1t.{v}_img_s" for v in compute.HW_VARIANTS])
    one = compute.bench_infer(28, FAST, compile_=False, threads=1)
    _sane(one, [f"compute.28.infer_1t.{v}_img_s" for v in ("fp32_nchw", "fp32_cl", "bf16_cl")])
    assert "compute.28.infer_1t.fp32_cl_1t_img_s" not in one


def test_score_with_matches_core_predict_and_pads_the_last_batch():
    from core.evaluate.scoring import predict
    from core.models.registry import build_model

    torch.manual_seed(0)
    variants, _ = compute.infer_variants(28, TINY, build_model("res-cnn", 28).eval(), compile_=False)
    # A "trained" model with non-trivial batch-norm statistics, loaded into the variants afterwards as
    # infer_auc_effects does: copied weights (fp32_cl) and a fresh fold (folded_cl) both score like it.
    model = build_model("res-cnn", 28)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    images = np.random.default_rng(0).integers(0, 256, (37, 28, 28), dtype=np.uint8)
    want = predict(model, images, channels_last=False, fold_bn=False)
    for v in ("fp32_cl", "folded_cl"):
        inf = variants[v]
        inf.load(model)
        got = compute.score_with(inf, images, len(inf.x), inf.channels_last)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_thread_child_reports_speed():
    out = compute.thread_child(28, 0.05, 8, 1)
    assert out["threads"] == 1 and out["img_s"] > 0 and out["steps"] >= 3


def test_auc_effects_train_each_variant(ctx):
    root = ctx.planted_root(28)
    assert D.load(root, 28).train.images.shape == (TINY.planted[0], 28, 28)
    figs = compute.auc_effects(ctx, 28, {"planted": root}, ("fp32_cl", "bf16_cl"))
    keys = [f"compute.28.auc.planted.{v}_{k}" for v in ("fp32_cl", "bf16_cl") for k in ("val_auc", "train_img_s")]
    _sane(figs, keys)
    assert all(0 <= figs[k] <= 1 for k in keys if k.endswith("auc"))
    # the run cache hands back the same run instead of training again: a default run is the variant in the
    # precision --amp auto resolves to here, whichever way the precision was asked for
    again = ctx.runs.train(root, 28, TINY.auc_epochs)
    assert again["val_auc"] == figs[f"compute.28.auc.planted.{compute.core_train_variant(28)}_val_auc"]
    assert ctx.runs.train(root, 28, TINY.auc_epochs, amp="bf16" if common.core_choice(28).dtype else "off") is again


def test_pipeline_and_compute_follow_core_s_measured_choice(monkeypatch, ctx):
    """Where --amp auto measured fp32 NCHW fastest (as it may on a CPU whose bf16 is slow), the benchmark's
    `core` variants run fp32 NCHW too, and the rows say so."""
    from core.train import autotune as A

    monkeypatch.setenv(env.AUTOTUNE, "on")
    monkeypatch.setattr(A, "measure_train", lambda m, s, b, d, cands, weight_decay=0.0: (
        {c.name: (300.0 if c.name == "fp32_nchw" else 100.0) for c in cands}, {c.name: 0.69 for c in cands}))
    assert compute.core_train_variant(28, 8) == "fp32_nchw"
    steps = []
    monkeypatch.setattr(pipeline, "CoreStep", lambda model, labels, amp: steps.append((model, amp)) or (lambda x, y: None))
    figs = pipeline.bench_pipeline(28, FAST, batch_size=8, threads=1)
    assert "pipeline.28.core_bf16_img_s" in figs  # the other precision, for comparison
    core_model, core_amp = steps[0]
    assert core_amp is None and next(core_model.parameters()).dim() == 4
    assert all(p.is_contiguous() for p in core_model.parameters())  # NCHW weights
    row = next(r for r in pipeline._rows(ctx, 28, figs, "") if r.name == "pipeline.28.core_vs_compute")
    assert "fp32_nchw" in row.note and row.target == ">= 0.95x"


# ---------------------------------------------------------------- autotune


def test_autotune_group_compares_the_choice_with_every_candidate(ctx, monkeypatch):
    """The choice is made for real (tiny batch); the training candidates' speeds are planted (the last
    is fastest), so the row's baseline is known; inference candidates are timed for real."""
    timed = []
    monkeypatch.setattr(autotune, "bench_train", lambda size, mode, variants, **kw: timed.append(variants) or {
        **{f"compute.{size}.train.{v}_img_s": 100.0 + i for i, v in enumerate(variants)},
        **{f"compute.{size}.train.{v}_best_img_s": 110.0 + i for i, v in enumerate(variants)}})
    rows = {r.name: r for r in autotune.run(dataclasses.replace(ctx, mode=FAST))}
    tr, inf = rows["compute.28.autotune.train_choice_vs_fastest"], rows["compute.28.autotune.infer_choice_vs_fastest"]
    assert timed == [compute.HW_VARIANTS if autotune.cpu_has_bf16() else compute.HW_VARIANTS[:2]]
    assert tr.baseline == 100.0 + len(timed[0]) - 1 and 0 < tr.ratio <= 1
    assert tr.passed == (tr.ratio >= 0.95) and "--amp auto chose" in tr.note
    assert 0 < inf.ratio <= 1 and inf.target == ">= 0.95x"
    assert all(v in inf.note for v in autotune.INFER_CANDIDATES)
    first, cached = rows["compute.28.autotune.choice_first_s"], rows["compute.28.autotune.choice_cached_s"]
    assert first.value > 0 and cached.value >= 0 and isinstance(first.passed, bool)
    assert (ctx.workdir / "autotune-cache-28" / "autotune.json").is_file()  # its own cache, not the suite's
    assert os.environ[env.AUTOTUNE] == "off"  # restored


# ---------------------------------------------------------------- memory


def test_large_npz_is_valid_chestmnist_layout_read_by_row(tmp_path):
    path = D.npz_path(tmp_path, 128)
    gb = common.write_large_npz(path, 128, (40, 8, 9), chunk=16)
    assert gb > 0
    data = D.load(tmp_path, 128)  # validated; read by row from the .npy cache
    assert isinstance(data.train.images, npz.NpyRows) and len(data.train) == 40 and len(data.test) == 9
    with np.load(path) as z:
        np.testing.assert_array_equal(data.train.images[np.array([0, 1, 2, 7, 9, 10, 39])],
                                      z["train_images"][[0, 1, 2, 7, 9, 10, 39]])


def test_memory_child_in_process(tmp_path):
    common.write_large_npz(D.npz_path(tmp_path, 128), 128, (40, 8, 12), chunk=16)
    for what, reader in (("train", "rows"), ("infer", "rows"), ("train", "mmap")):
        out = memory.child(Namespace(root=str(tmp_path), what=what, reader=reader, steps=1, batch=16, size=128))
        _sane(out, ["peak_rss_gb", "peak_anon_gb", "peak_file_gb", "seconds", "images_read"])
        assert out["images_read"] == (40 if what == "train" else 12)
        assert out["steps"] == (1 if what == "train" else 0)


def test_memory_prepare_and_one_child_subprocess(tmp_path):
    root, cache, info = memory.prepare(tmp_path, (24, 8, 10), size=128)
    _sane(info, ["npz_gb", "write_s", "cache_s"])
    assert list(cache.rglob("*.npy"))  # core's cache was built where CHESTMNIST_CACHE pointed
    assert cache in info["train_npy"].parents and info["train_npy"].name.startswith("train_images.")
    out = memory._run_child(root, cache, "train", "mmap", 1, 8, 128)
    _sane(out, ["peak_rss_gb", "peak_anon_gb", "peak_file_gb", "ru_maxrss_gb", "parent_children_maxrss_gb"])
    assert out["images_read"] == 24 and out["what"] == "train" and out["reader"] == "mmap"
    _sane(memory.read_speed(info["train_npy"], 128, 8, 3), ["memory.128.read_mmap_ms", "memory.128.read_rows_ms",
                                                     "memory.128.read_mmap_best_ms", "memory.128.read_rows_best_ms"])


# ---------------------------------------------------------------- interaction


def test_threshold_metrics_figure():
    figs = interaction.bench_threshold_metrics(TINY)
    _sane(figs, ["interaction.threshold_metrics_ms"])
    scores, labels = interaction.chestmnist_sized_scores(500, 0)
    assert scores.shape == labels.shape == (500, 14) and scores.dtype == np.float32


def test_pages_rerun_figures(tmp_path, monkeypatch):
    if not all(interaction.pages_available().values()):
        pytest.skip("pages/thresholds.py or pages/saliency.py not present")
    data_root, runs_dir, made = interaction.make_app_runs(tmp_path, (28,))
    figs = interaction.bench_thresholds_page(data_root, made[28], TINY, big=False)
    _sane(figs, ["interaction.thresholds_rerun_ms", "interaction.thresholds_rows"])
    figs = interaction.bench_saliency_page(data_root, made[28], TINY, len(made))
    _sane(figs, ["interaction.saliency_rerun_ms"])


# ---------------------------------------------------------------- saliency


def test_grad_cam_figures():
    figs = saliency.bench_grad_cam(28, FAST)
    _sane(figs, [f"saliency.28.{k}" for k in ("cam_one_ms", "cam_all14_ms", "cam_one_1thread_ms", "cam_one_best_ms")])
    rows = saliency.cam_rows(28, FAST)
    assert [r.name for r in rows] == ["saliency.28.cam_one_ms", "saliency.28.cam_all14_ms",
                                      "saliency.28.cam_one_1thread_ms"]


@pytest.mark.parametrize("name", ["res-cnn", "seed-cnn"])
def test_stage_candidates_include_the_declared_layer_and_weightings_differ(name):
    from core.explain import saliency as S
    from core.models.registry import build_model
    from tests.planted_lesions import lesion_split

    torch.manual_seed(0)
    model = build_model(name, 28).eval()
    stages = saliency.stage_outputs(model, 28)
    sides = [int(label.split("(")[1].split("x")[0]) for label, _ in stages]
    assert len(stages) >= 2 and sides == sorted(sides, reverse=True)  # one per resolution, finest first
    assert any(m is model.cam_layer for _, m in stages)
    x, y = lesion_split(6, 28, seed=3)
    cls = np.arange(6) % 14
    layer = model.cam_layer
    element = saliency._weighted_maps(model, batching.to_tensor(x), cls, layer, 28, mean_weights=False)
    mean = saliency._weighted_maps(model, batching.to_tensor(x), cls, layer, 28, mean_weights=True)
    core = S.grad_cam(model, x, cls)
    # The element-wise candidate is core's Grad-CAM before min-max scaling; the channel-mean one is not.
    assert (element.reshape(6, -1).argmax(1) == core.reshape(6, -1).argmax(1)).all()
    assert not np.allclose(mean, element)


# ---------------------------------------------------------------- efficiency


def test_flops_table():
    figs = efficiency.flops_table()
    _sane(figs, [f"efficiency.{s}.{m}.gflops" for s in (28, 64, 128, 224) for m in efficiency.MODELS]
          + ["efficiency.res-cnn.flops_224_over_64"])


def test_auc_per_gflop(ctx):
    figs = efficiency.auc_per_gflop(ctx, (28,), 1)
    _sane(figs, [f"efficiency.28.{m}.{k}" for m in efficiency.MODELS for k in ("test_auc", "gflops", "auc_per_gflop")])


# ---------------------------------------------------------------- stats


def test_stats_figures():
    figs = stats.bench_paired(FAST, n_boot=50)
    _sane(figs, [f"stats.{k}" for k in ("paired_s", "paired_best_s", "separate_s", "separate_best_s",
                                          "paired_ci_width", "own_ci_width")])
    assert figs["stats.rows"] == FAST.metric_rows and figs["stats.n_boot"] == 50
    # two runs of one recipe differ far less than either run's own uncertainty
    assert 0 < figs["stats.paired_ci_width"] < figs["stats.own_ci_width"]
    _sane(stats.bench_clinical(FAST), ["stats.calibration_ms", "stats.sens_at_spec_ms"])


# ---------------------------------------------------------------- app_speed


def test_bench_app_import_figures():
    from bench import app_speed

    figs = app_speed.import_figures()
    _sane(figs, ["app_speed.import.ui.common_s"])
    import subprocess
    import sys
    loaded = subprocess.run([sys.executable, "-c", "import sys, ui.common; print('torch' in sys.modules)"],
                            cwd=app_speed.REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert figs["app_speed.import.ui.common_loads_torch"] is (loaded == "True")


def test_bench_app_paint_figures(tmp_path):
    import shutil

    from bench import app_speed

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Chromium not installed")
    pytest.importorskip("playwright")
    # The figures' plumbing, not the warm-up, is what is tested: the visit after reading opens Train through
    # the same helper as the first visit, so its own fresh server (the third) is left out.
    figs = app_speed.paint_figures(tmp_path, read_s=None)
    _sane(figs, ["app_speed.bare_first_paint_s", "app_speed.first_paint_s", "app_speed.train_first_visit_s",
                 "app_speed.train_usable_s", "app_speed.train_estimate_shown_s", "app_speed.page_img_s",
                 "app_speed.cli_img_s"])
    assert "app_speed.train_visit_after_reading_s" not in figs
    assert figs["app_speed.train_estimate_shown_s"] >= figs["app_speed.train_usable_s"] >= figs[
        "app_speed.train_first_visit_s"]


# ---------------------------------------------------------------- export


def test_bench_export_times_onnxruntime_against_cores_predict(tmp_path):
    ctx = Context(mode=FAST, workdir=tmp_path, runs=RunCache(tmp_path), log=lambda _m: None, nih=None)
    figs = export.bench_export(ctx, 28)
    _sane(figs, [f"export.28.{k}" for k in ("export_s", "onnx_ms", "torch_ms", "onnx_best_ms", "torch_best_ms")])
    assert figs["export.28.max_abs_diff"] <= 1e-5  # the same scores, not only a speed
    (row,) = export.run(ctx)
    assert row.name == "export.28.onnx_ms_per_image" and row.ratio > 0 and row.passed is None


# ---------------------------------------------------------------- the command line


def test_cli_tiny_prints_table_and_one_json_line(capsys, tmp_path):
    from bench.__main__ import main

    assert main(["--tiny", "--only", "interaction,efficiency,stats", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("name "))
    for col in ("value", "unit", "baseline", "ratio", "target", "result"):
        assert col in out[header]
    result = json.loads(out[-1])
    assert result["mode"] == "tiny" and result["machine"]["torch"] == torch.__version__
    from core.train.autotune import cpu_info
    assert result["machine"]["cpu"] == cpu_info()["model"] and result["machine"]["cpu_flags"] == cpu_info()["flags"]
    assert cpu_info()["model"] in out[0] and "flags:" in out[0]
    figs = result["figures"]
    assert not [k for k in figs if k.endswith(".error")], figs
    for name in ("interaction.threshold_metrics_ms", "efficiency.res-cnn.flops_224_over_64",
                 "efficiency.28.auc_per_gflop", "stats.paired_bootstrap_s"):
        assert name in figs and figs[name]["value"] > 0
        assert name in "\n".join(out[header:-1])
    assert isinstance(figs["efficiency.res-cnn.flops_224_over_64"]["passed"], bool)
    assert result["summary"]["pass"] + result["summary"]["fail"] + result["summary"]["info"] == len(figs)


def test_cli_rejects_unknown_group(capsys):
    from bench.__main__ import main

    with pytest.raises(SystemExit):
        main(["--tiny", "--only", "nope"])


# ---------------------------------------------------------------- effective


def test_bench_effective_times_the_grid_against_one_native_scoring():
    from bench import effective

    f = effective.bench_effective(64)
    _sane(f, ["effective.64.native_s", "effective.64.grid_s"])
    assert f["effective.64.sets"] == len([r for r in effective.GRID if r < 64]) + 1  # + the demo's 28 px file
    assert f["effective.64.images"] == 169
