"""Saliency: whether the maps can be trusted, and how long they take.

* Pointing game on planted lesions (tests/planted_lesions.py) for every model in core.models at
  28, 64, 128 and 224 px (--quick and --tiny: res-cnn and seed-cnn at 28 px only): a model is trained
  briefly (tests/planted_lesions.setup), and for the test images with
  exactly one finding we count how often the map's peak falls in the lesion's cell (chance 1/16).
  Reported for the declared `cam_layer` (the figure with the target) and, as the evidence behind
  that choice, for every stage output with both Grad-CAM weightings (channel-mean and element-wise).
* Per method: cascading parameter randomisation (mean Spearman rho after every layer is random)
  and deletion/insertion areas against the random order (core.explain.sanity), on the default model at
  every size trained.
* Milliseconds: Grad-CAM of one image for one class at each size; Integrated Gradients and
  Occlusion of one image at the largest size.

`python -m bench.saliency MODEL:SIZE [...]` plays the pointing game of chosen cases only.
"""
from __future__ import annotations

import time

import numpy as np

from bench.common import Context, Mode, Row, at_least, at_most, interleaved, median, torch_threads

CAM_TARGET_MS = {28: 10.0, 64: 10.0, 128: 50.0, 224: 50.0}
SLOW_TARGET_MS = 2000.0


def stage_outputs(model, size: int) -> list:
    """[(label, module)]: for each spatial resolution inside the model, the last module producing it
    (a stage's output), found by running one image. Candidates for the Grad-CAM layer. A module inside
    a block that changes the resolution (a ResNet-50 bottleneck's first 1x1 convolution, before its
    strided one) is part of that block, not a stage output; plain Sequential containers don't count."""
    import torch
    from torch import nn

    modules = dict(model.named_modules())
    shapes: dict[str, tuple] = {}

    def note(name: str):
        def hook(_mod, _inputs, out) -> None:  # returns None: the output is left as it is
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                shapes[name] = tuple(out.shape[2:])  # children finish first: insertion order = completion order
        return hook
    hooks = [m.register_forward_hook(note(name)) for name, m in modules.items() if name]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, size, size))
    finally:
        for h in hooks:
            h.remove()

    def inside_resizing_block(name: str) -> bool:
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        return any(not isinstance(modules[p], nn.Sequential) and shapes.get(p) != shapes[name] for p in parents)
    seen: dict[tuple, tuple[str, object]] = {}
    for name, shape in shapes.items():
        if not inside_resizing_block(name):
            seen[shape] = (name, modules[name])
    return [(f"{name} ({h}x{w})", mod) for (h, w), (name, mod) in seen.items() if h * w > 1]


def _weighted_maps(model, x, cls, layer, size: int, mean_weights: bool) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    acts = []
    handle = layer.register_forward_hook(lambda _m, _i, out: acts.append(out))
    try:
        with torch.enable_grad():
            logits = model(x)
            (grads,) = torch.autograd.grad(logits[torch.arange(len(cls)), torch.as_tensor(cls)].sum(), acts[0])
    finally:
        handle.remove()
    w = grads.mean(dim=(2, 3), keepdim=True) if mean_weights else grads
    cam = F.relu((w * acts[0].detach()).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def pointing(name: str, size: int, n_test: int = 300, setup: tuple[int, int, int] | None = None,
             seed: int = 0) -> dict:
    """Train `name` at `size` on planted lesions; AUC, the declared layer's pointing rate and every
    stage's rates under both weightings. `setup` (train images, epochs, batch) overrides
    tests.planted_lesions.setup, to try a cheaper training; `seed` is the training seed (same data)."""
    from core.explain import saliency as S
    from core.data.batching import to_tensor
    from core.metrics import auc_per_class
    from tests import planted_lesions as PL

    n_train, epochs, batch = setup or PL.setup(name, size)
    x_train, y_train = PL.lesion_split(n_train, size, seed=0)
    x, y = PL.lesion_split(n_test, size, seed=1)
    t = time.perf_counter()
    model = PL.train_quick(name, x_train, y_train, epochs=epochs, batch=batch, seed=seed)
    seconds = time.perf_counter() - t
    auc = float(np.nanmean(auc_per_class(y, PL.predict(model, x))))
    rows, cls = PL.single_finding(y)
    rate = float(PL.pointing_hits(S.grad_cam(model, x[rows], cls), cls).mean())
    xt = to_tensor(x[rows])
    stages = {}
    for label, layer in stage_outputs(model, size):
        stages[label] = tuple(float(PL.pointing_hits(_weighted_maps(model, xt, cls, layer, size, mean), cls).mean())
                              for mean in (True, False))
    return {"auc": auc, "rate": rate, "n": len(rows), "train_s": seconds, "stages": stages, "model": model,
            "x": x[rows], "cls": cls, "setup": (n_train, epochs, batch), "layer": _layer_name(model), "seed": seed}


def _layer_name(model) -> str:
    return next(n for n, m in model.named_modules() if m is model.cam_layer)


def summary(name: str, size: int, f: dict) -> str:
    """One line per case, logged as soon as it is measured so that a full run stopped early keeps its figures."""
    n, e, b = f["setup"]
    return (f"saliency: {name} {size} px ({n} x {e}, batch {b}, seed {f['seed']}): pointing {f['rate']:.2f} at "
            f"{f['layer']} ({f['n']} images), test AUC {f['auc']:.3f}, {f['train_s']:.0f} s of training")


def bench_grad_cam(size: int, mode: Mode) -> dict:
    """Median (and best) ms of one-class Grad-CAM (core; core forced to 1 thread) and all-14-classes
    Grad-CAM (core) of one image at `size`, on the model as the app loads it (NCHW, eval), in a process
    with torch's default thread count. Timed interleaved."""
    import torch

    from core.explain import saliency as S
    from core.models.registry import DEFAULT_MODEL, build_model

    torch.manual_seed(0)
    model = build_model(DEFAULT_MODEL, size).eval()
    images = np.random.default_rng(size).integers(0, 256, (8, size, size), dtype=np.uint8)
    k = [0]

    def nxt() -> tuple[np.ndarray, int]:
        k[0] += 1
        return images[k[0] % 8], k[0] % 14

    def one() -> None:
        img, c = nxt()
        S.grad_cam(model, img[None], c)

    def one_1t() -> None:
        with torch_threads(1):
            one()

    fns = {"one": one, "all14": lambda: S.grad_cam_all_classes(model, nxt()[0]), "one_1thread": one_1t}
    t = interleaved(fns, max(9, mode.repeats * 5), max(2, mode.warmup))
    p = f"saliency.{size}."
    out = {p + f"cam_{k}_ms": median(v) * 1e3 for k, v in t.items()}
    out.update({p + f"cam_{k}_best_ms": min(v) * 1e3 for k, v in t.items()})
    return out


def cam_rows(size: int, mode: Mode) -> list[Row]:
    f = bench_grad_cam(size, mode)
    p = f"saliency.{size}."
    one, all14, one1 = f[p + "cam_one_ms"], f[p + "cam_all14_ms"], f[p + "cam_one_1thread_ms"]
    target = CAM_TARGET_MS[size]
    return [
        Row(p + "cam_one_ms", one, "ms", None, None, f"< {target:g} ms", at_most(one, target),
            f"core.explain.saliency.grad_cam, 1 image, 1 class, res-cnn (best {f[p + 'cam_one_best_ms']:.1f} ms)"),
        Row(p + "cam_all14_ms", all14, "ms", one, all14 / one, "", None,
            "core.explain.saliency.grad_cam_all_classes; ratio = time(all 14) / time(1 class) (the backward runs from the "
            "first stage on, not through the head only)",
            f[p + "cam_all14_best_ms"] / f[p + "cam_one_best_ms"]),
        Row(p + "cam_one_1thread_ms", one1, "ms", one, one / one1, "", None,
            "core.explain.saliency.grad_cam under torch.set_num_threads(1); ratio = speed-up",
            f[p + "cam_one_best_ms"] / f[p + "cam_one_1thread_best_ms"]),
    ]


def _ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times) * 1e3


def checks(f: dict, k: int) -> dict:
    """Per method: Spearman rho with the trained maps after each cascading randomisation step, and the
    deletion/insertion areas with their random-order baselines, on the first `k` single-finding test
    images of a pointing() result. {method: {"rho": [...], "deletion": a, "random_deletion": b, ...}}."""
    from core.explain import saliency as S
    from core.explain import sanity as Q

    images, cls = f["x"][:k], f["cls"][:k]
    out = {}
    for method in S.METHODS:
        rho = Q.randomisation(f["model"], images, cls, method).mean()
        fa = Q.faithfulness(f["model"], images, cls, S.attribute(f["model"], images, cls, method))
        out[method] = {"rho": [round(float(v), 3) for v in rho], "images": len(cls),
                       **{c: round(float(fa.auc(c).mean()), 3)
                          for c in ("deletion", "random_deletion", "insertion", "random_insertion")}}
    return out


def check_rows(name: str, size: int, f: dict, k: int) -> list[Row]:
    rows = []
    for method, c in checks(f, k).items():
        p = f"saliency.{method}.{size}"
        rho = c["rho"]
        rows.append(Row(p + ".randomised_rho", rho[-1], "rho", rho[0], None, "", None,
                        f"Spearman rho with the trained maps once every layer is random (baseline: after the head "
                        f"only); cascade {', '.join(f'{v:.2f}' for v in rho)}; {name} {size} px, {c['images']} images"))
        for curve in ("deletion", "insertion"):
            a, base = c[curve], c["random_" + curve]
            good = a < base if curve == "deletion" else a > base
            rows.append(Row(p + f".{curve}_auc", a, "area", base, None,
                            "< random" if curve == "deletion" else "> random", good,
                            f"area under the {curve} curve (probability over share of pixels); baseline: random order"))
    return rows


def run(ctx: Context) -> list[Row]:
    import torch

    from core.explain import saliency as S
    from core.models.registry import DEFAULT_MODEL, MODELS, build_model

    mode, rows = ctx.mode, []
    full = mode.name == "full"
    sizes = (28, 64, 128, 224) if full else (28,)  # training at 224 px takes minutes
    # The reference ResNets train for minutes even at 28 px: full mode only (the tests play resnet18's 28 px game).
    names = list(MODELS) if full else [n for n in MODELS if not n.startswith("resnet")]
    trained = {}
    for size in sizes:
        for name in names:
            ctx.log(f"saliency: pointing game, {name} at {size} px")
            f = pointing(name, size)
            trained[(name, size)] = f
            ctx.log(summary(name, size, f))
            p = f"saliency.pointing.{name}.{size}"
            note = (f"peak in the lesion's cell (chance 1/16), {f['n']} single-finding test images; test AUC "
                    f"{f['auc']:.3f} (needs > 0.95) after {f['train_s']:.0f} s of training")
            rows.append(Row(p, f["rate"], "share", None, None, ">= 0.90 with AUC > 0.95",
                            None if f["auc"] <= 0.95 else at_least(f["rate"], 0.9), note))
            stage_note = "; ".join(f"{k}: {a:.2f} / {b:.2f}" for k, (a, b) in f["stages"].items())
            rows.append(Row(p + ".stages", None, "", note="channel-mean / element-wise weights: " + stage_note))

    # The checks per method on the default model at every size trained (full mode: all four).
    k = 8 if mode.name == "tiny" else 16
    for size in sizes:
        ctx.log(f"saliency: randomisation and deletion/insertion per method, {DEFAULT_MODEL} at {size} px")
        rows += check_rows(DEFAULT_MODEL, size, trained[(DEFAULT_MODEL, size)], k)

    for size in mode.cam_sizes:
        ctx.log(f"saliency: Grad-CAM timing at {size} px")
        rows += cam_rows(size, mode)
    big = max(mode.cam_sizes)
    model = build_model(DEFAULT_MODEL, big).eval()
    img = np.random.default_rng(0).integers(0, 256, (1, big, big), dtype=np.uint8)
    for method in ("integrated-gradients", "occlusion"):
        ms = _ms(lambda: S.attribute(model, img, 3, method), max(1, mode.repeats))
        rows.append(Row(f"saliency.{big}.{method}_ms", ms, "ms", None, None, f"<= {SLOW_TARGET_MS:g} ms",
                        at_most(ms, SLOW_TARGET_MS), f"core.explain.saliency.attribute, 1 image, {torch.get_num_threads()} "
                        f"threads, {DEFAULT_MODEL} at {big} px"))
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.saliency MODEL:SIZE [...]`: the full run's pointing game for chosen cases only, one
    JSON line each (the full run trains every model at every size; docs/saliency.md gives its cost)."""
    import argparse
    import json
    import sys

    import torch

    from core.data.chestmnist import SIZES
    from core.models.registry import MODELS

    p = argparse.ArgumentParser(prog="python -m bench.saliency", description=main.__doc__.split("\n")[0])
    p.add_argument("cases", nargs="+", metavar="MODEL:SIZE", help=f"models among {', '.join(MODELS)}")
    p.add_argument("--setup", default=None, metavar="IMAGES,EPOCHS,BATCH",
                   help="train with this instead of tests.planted_lesions.setup (to try a cheaper one)")
    p.add_argument("--seed", type=int, default=0, help="training seed (the data stay the same)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the maps (training always uses 1)")
    p.add_argument("--checks", type=int, default=0, metavar="K",
                   help="also run each method's randomisation and deletion/insertion checks on K test images")
    args = p.parse_args(argv)
    cases = [c.rpartition(":") for c in args.cases]
    bad = [n + s + z for n, s, z in cases if n not in MODELS or z not in map(str, SIZES)]
    if bad:
        p.error(f"bad case(s) {', '.join(bad)}: write MODEL:SIZE, MODEL among {', '.join(MODELS)}, "
                f"SIZE among {', '.join(map(str, SIZES))}")
    setup = None
    if args.setup:
        parts = args.setup.split(",")
        if len(parts) != 3 or not all(v.isdigit() and int(v) > 0 for v in parts):
            p.error(f"--setup {args.setup!r}: write three positive whole numbers, IMAGES,EPOCHS,BATCH (e.g. 600,4,32)")
        setup = tuple(int(v) for v in parts)
    torch.set_num_threads(args.threads)
    for name, _, size in cases:
        f = pointing(name, int(size), setup=setup, seed=args.seed)
        print(summary(name, int(size), f), file=sys.stderr, flush=True)
        keep = {k: f[k] for k in ("setup", "seed", "layer", "rate", "auc", "n", "stages")}
        extra = {"checks": checks(f, args.checks)} if args.checks else {}
        print(json.dumps({"model": name, "size": int(size), **keep, "train_s": round(f["train_s"], 1), **extra}),
              flush=True)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
