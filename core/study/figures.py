"""The report's figures: training curves, test AUC against cost, per-class test AUC (PNG files)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.data import chestmnist as D  # noqa: E402
from core.study.common import FIGURES, FRONTIER_FIGURE  # noqa: E402
from core.study.tables import multi_seed, row_label, several_candidates  # noqa: E402

def draw_figures(summary: dict, records: list[dict], out_dir: Path) -> dict[str, str]:
    """Draw the report's figures into `out_dir`; {figure key: file name} (core.study.common.FIGURES)."""
    # One colour per row (candidate and size); runs find theirs by (candidate, size).
    keys = [(r["candidate"], r["size"]) for r in summary["sizes"]]
    colors = {k: plt.get_cmap("viridis")(i / max(1, len(keys) - 1) * 0.85) for i, k in enumerate(keys)}
    sizes = [row_label(summary, r) for r in summary["sizes"]]
    source = summary["data"]["label"]
    _curves(summary, records, colors, source, out_dir / FIGURES["curves"])
    _auc_vs_cost(summary, records, colors, source, out_dir / FIGURES["auc_vs_cost"])
    _per_class_auc(summary, sizes, source, out_dir / FIGURES["per_class_auc"])
    if summary.get("frontier"):
        _frontier(summary["frontier"], source, out_dir / FRONTIER_FIGURE)
        return FIGURES | {"frontier": FRONTIER_FIGURE}
    return dict(FIGURES)


def _frontier(grid: dict, source: str, path: Path) -> None:
    """Images or pixels (core.study.frontier): test AUC against training GFLOP and measured seconds, each cell
    labelled by size and subset, the Pareto frontier of each axis as a step line."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    cells = grid["cells"]
    sizes = sorted({c["size"] for c in cells})
    colors = {s: plt.get_cmap("viridis")(i / max(1, len(sizes) - 1) * 0.85) for i, s in enumerate(sizes)}
    for ax, key, front, xlabel in ((axes[0], "train_gflop", "front_gflop", "training GFLOP (3 x forward x images x epochs)"),
                                   (axes[1], "seconds", "front_seconds", "measured training seconds (train + val)")):
        shown = [c for c in cells if c[key] is not None]
        for c in shown:
            sd = c["auc_sd"] or 0
            ax.errorbar([c[key]], [c["auc"]], yerr=[[sd], [sd]], fmt="o", ms=8, capsize=4, color=colors[c["size"]],
                        mec="black" if c[front] else colors[c["size"]])
            ax.annotate(c["label"], (c[key], c["auc"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
        line = sorted((c[key], c["auc"]) for c in shown if c[front])
        if line:
            ax.step(*zip(*line), where="post", color="black", lw=1, ls="--", label="Pareto frontier")
            ax.legend(fontsize=8, loc="lower right")
        if shown and max(c[key] for c in shown) / min(c[key] for c in shown) > 8:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide within a decade
        ax.margins(x=0.12)  # room for the labels of the outermost cells
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test AUC (medmnist)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Images or pixels: test AUC against training compute - error bars ± 1 sd over seeds - {source}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(summary: dict, records: list[dict], colors: dict, source: str, path: Path) -> None:
    """Validation AUC and losses per epoch, one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for r in records:
        key = (r["candidate"], r["size"])
        c, first = colors[key], r["seed"] == min(x["seed"] for x in records if (x["candidate"], x["size"]) == key)
        ep = r["curves"]["epoch"]
        label = row_label(summary, r) if first else None
        for ax, key in zip(axes, ("val_auc", "train_loss", "val_loss")):
            y = [np.nan if v is None else v for v in r["curves"][key]]
            ax.plot(ep, y, "-o", color=c, ms=3, lw=1.4, alpha=0.9, label=label)
        i = ep.index(r["best_epoch"]) if r["best_epoch"] in ep else None
        if i is not None and r["curves"]["val_auc"][i] is not None:
            axes[0].plot(ep[i], r["curves"]["val_auc"][i], "*", color=c, ms=12, mec="black", mew=0.6)
    for ax, title in zip(axes, ("validation AUC (medmnist; star = kept checkpoint)", "train loss (weighted BCE)",
                                "validation loss (weighted BCE)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(title="size", fontsize=8)
    seeds_note = f"{len(summary['seeds'])} seed(s), one line per run" if len(summary["seeds"]) > 1 else "seed " + str(summary["seeds"][0])
    fig.suptitle(f"Training curves per size - {source} - {seeds_note}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _auc_vs_cost(summary: dict, records: list[dict], colors: dict, source: str, path: Path) -> None:
    """Test AUC against FLOPs and against measured seconds per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    multi = multi_seed(summary)
    for ax, key, xlabel in ((axes[0], "gflops", "GFLOPs per image (forward)"),
                            (axes[1], "seconds_per_epoch", "measured seconds per epoch (train + val)")):
        for r in summary["sizes"]:
            x, y = r.get(key), r.get("test_auc")
            if x is None or y is None:
                continue
            if multi and r["n_seeds"] > 1:
                yerr = [[r["test_auc_std"] or 0], [r["test_auc_std"] or 0]]
                for rec in records:
                    if (rec["candidate"], rec["size"]) == (r["candidate"], r["size"]) and rec.get(key) is not None:
                        ax.plot(rec[key], rec["test_auc"], ".", color=colors[(r["candidate"], r["size"])], alpha=0.5)
            else:
                lo, hi = r.get("test_auc_ci_low"), r.get("test_auc_ci_high")
                yerr = [[y - lo], [hi - y]] if lo is not None and hi is not None else None
            ax.errorbar([x], [y], yerr=yerr, fmt="o", ms=8, capsize=5, color=colors[(r["candidate"], r["size"])],
                        label=row_label(summary, r))
            ax.annotate(row_label(summary, r), (x, y), textcoords="offset points", xytext=(8, 6), fontsize=9)
        lo_y, hi_y = ax.get_ylim()
        if lo_y <= 0.5 <= hi_y + 0.02:
            ax.axhline(0.5, color="grey", ls="--", lw=0.8)
            ax.annotate("chance", (0, 0.5), xycoords=("axes fraction", "data"), xytext=(4, 3),
                        textcoords="offset points", fontsize=8, color="grey")
        xs = [r[key] for r in summary["sizes"] if r.get(key)]
        if xs and max(xs) / min(xs) > 8:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test AUC (medmnist)")
        ax.grid(alpha=0.3)
    bars = "mean ± 1 std over seeds (dots: seeds)" if multi else "95% bootstrap CI"
    fig.suptitle(f"Test AUC against cost - error bars: {bars} - {source}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _per_class_auc(summary: dict, sizes: list[int], source: str, path: Path) -> None:
    """Per-class test AUC across sizes; undefined classes blank."""
    multi = multi_seed(summary)
    classes = list(D.CLASS_NAMES)
    grid = np.array([[np.nan if r["test_auc_per_class"].get(c) is None else r["test_auc_per_class"][c]
                      for r in summary["sizes"]] for c in classes], dtype=float)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * len(sizes), 7.2))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="white")
    # Centred on chance (0.5): red is worse than guessing, green better.
    norm = matplotlib.colors.TwoSlopeNorm(vmin=0.0, vcenter=0.5, vmax=1.0)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(classes)):
        for j in range(len(sizes)):
            ax.text(j, i, "n/a" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}", ha="center", va="center",
                    fontsize=8, color="grey" if np.isnan(grid[i, j]) else "black")
    ax.set_xticks(range(len(sizes)), sizes, rotation=30 if several_candidates(summary) else 0, ha="right"
                  if several_candidates(summary) else "center")
    positives = summary["sizes"][0].get("test_positives") or {}
    ax.set_yticks(range(len(classes)), [f"{c} ({positives[c]:,} pos.)" if positives.get(c) is not None else c
                                        for c in classes])
    fig.colorbar(im, ax=ax, fraction=0.05, label="test AUC" + (" (mean over seeds)" if multi else ""))
    undefined = sorted({(u["name"], u["reason"]) for r in summary["sizes"] for u in r["auc_undefined_classes"]})
    note = ("Blank = AUC undefined on test: " + "; ".join(f"{n} ({why})" for n, why in undefined) + ".") if undefined \
        else "AUC is defined for every class."
    thin = [c for c in classes if positives.get(c) and positives[c] < 10]
    if thin:
        note += f"\nFewer than 10 test positives (AUC very noisy): {', '.join(thin)}."
    ax.set_title(f"Per-class test AUC\n{source}", fontsize=10)
    fig.text(0.02, 0.01, note, fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.03 + 0.025 * note.count("\n"), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
