"""Model efficiency: test AUC per forward GFLOP of the default res-cnn against seed-cnn, and how the
default model's cost grows with resolution.

Each model is trained through core.train with the same seed and epochs on NIH-1000 (1,000 real
NIH radiographs in ChestMNIST layout: NOT ChestMNIST, so these AUCs are no ChestMNIST result;
without it, on the planted-pattern task) and evaluated on its test split (best validation
checkpoint). FLOPs per image come from core.models.describe.
"""
from __future__ import annotations

from bench.common import Context, Row, at_most
from core.models.registry import describe

MODELS = ("res-cnn", "seed-cnn")


def flops_table(sizes=(28, 64, 128, 224)) -> dict:
    """Forward GFLOPs per image and parameters of both models at each size. Figures dict."""
    out = {}
    for m in MODELS:
        for s in sizes:
            d = describe(m, s)
            out[f"efficiency.{s}.{m}.gflops"] = d["flops"] / 1e9
            out[f"efficiency.{s}.{m}.params"] = d["params"]
    out["efficiency.res-cnn.flops_224_over_64"] = out["efficiency.224.res-cnn.gflops"] / out["efficiency.64.res-cnn.gflops"]
    return out


def auc_per_gflop(ctx: Context, sizes, epochs: int) -> dict:
    """Test AUC, GFLOPs and AUC/GFLOP of each model at each size (same seed and epochs). Figures dict."""
    root = ctx.nih if ctx.nih is not None else None
    out = {}
    for size in sizes:
        data_root = root or ctx.planted_root(size)
        for m in MODELS:
            r = ctx.runs.train(data_root, size, epochs, model=m)
            gflops = describe(m, size)["flops"] / 1e9
            p = f"efficiency.{size}.{m}."
            out.update({p + "test_auc": r["test_auc"], p + "gflops": gflops, p + "auc_per_gflop": r["test_auc"] / gflops,
                        p + "train_img_s": r["images_per_s"]})
    return out


def run(ctx: Context) -> list[Row]:
    mode = ctx.mode
    rows = []
    ft = flops_table()
    ratio = ft["efficiency.res-cnn.flops_224_over_64"]
    rows.append(Row("efficiency.res-cnn.flops_224_over_64", ft["efficiency.224.res-cnn.gflops"], "GFLOP/img",
                    ft["efficiency.64.res-cnn.gflops"], ratio, "<= 4x", at_most(ratio, 4.0),
                    "forward FLOPs at 224 px vs 64 px (core.models.describe); ratio here is cost, lower is better"))
    for s in (28, 64, 128, 224):
        rows.append(Row(f"efficiency.{s}.gflops", ft[f"efficiency.{s}.res-cnn.gflops"], "GFLOP/img",
                        ft[f"efficiency.{s}.seed-cnn.gflops"],
                        ft[f"efficiency.{s}.res-cnn.gflops"] / ft[f"efficiency.{s}.seed-cnn.gflops"], "", None,
                        f"res-cnn vs seed-cnn forward cost; params {ft[f'efficiency.{s}.res-cnn.params']:,} vs "
                        f"{ft[f'efficiency.{s}.seed-cnn.params']:,}"))
    where = "NIH-1000 (not ChestMNIST)" if ctx.nih is not None else "planted task (NIH-1000 not found)"
    ctx.log(f"efficiency: training res-cnn and seed-cnn at {mode.efficiency_sizes} px, {mode.efficiency_epochs} epochs, on {where}")
    f = auc_per_gflop(ctx, mode.efficiency_sizes, mode.efficiency_epochs)
    for s in mode.efficiency_sizes:
        r, b = f"efficiency.{s}.res-cnn.", f"efficiency.{s}.seed-cnn."
        rows.append(Row(f"efficiency.{s}.auc_per_gflop", f[r + "auc_per_gflop"], "AUC/GFLOP", f[b + "auc_per_gflop"],
                        f[r + "auc_per_gflop"] / f[b + "auc_per_gflop"], "", None,
                        f"{where}, {mode.efficiency_epochs} epochs seed 0: test AUC res-cnn {f[r + 'test_auc']:.3f} "
                        f"({f[r + 'gflops']:.3f} GFLOP) vs seed-cnn {f[b + 'test_auc']:.3f} ({f[b + 'gflops']:.3f} GFLOP)"))
        rows.append(Row(f"efficiency.{s}.res-cnn.test_auc", f[r + "test_auc"], "test AUC", f[b + "test_auc"],
                        None, "", None, f"baseline = seed-cnn; {where}"))
    return rows
