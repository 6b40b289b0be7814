"""The report's tables as display text (report.md, the app and the CLI show the same strings)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def _ms(row: dict, key: str, digits: int = 3) -> str:
    """`mean ± std` over seeds, or the single value."""
    if row.get(key) is None:
        return "n/a"
    std = row.get(f"{key}_std")
    return f"{row[key]:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{row[key]:.{digits}f}"


def _with_ci(row: dict, key: str) -> str:
    if row.get(key) is None:
        return "n/a"
    if row.get("n_seeds", 1) > 1:
        return f"{_ms(row, key)} (n={row['n_seeds']})"
    lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return f"{row[key]:.3f} [{_f(lo)}, {_f(hi)}]"


def _num(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def several_candidates(summary: dict) -> bool:
    """Whether the report covers several candidates (models or recipes): rows then name theirs."""
    return len({r.get("candidate") for r in summary["sizes"]}) > 1


def row_label(summary: dict, row: dict) -> str:
    """A row's name in tables and figures: "64 px", or "res-cnn 64 px" when there are several candidates."""
    return f"{row['candidate']} {row['size']} px" if several_candidates(summary) else f"{row['size']} px"


def _first(summary: dict, row: dict) -> dict:
    return {"candidate": row["candidate"], "size": f"{row['size']} px"} if several_candidates(summary) \
        else {"size": f"{row['size']} px"}


def multi_seed(summary: dict) -> bool:
    """Whether some size has several seeds: its tables then show mean ± std, not bootstrap CIs."""
    return any(r["n_seeds"] > 1 for r in summary["sizes"])


def format_tables(summary: dict) -> dict[str, pd.DataFrame]:
    """The report's three tables as display-ready DataFrames (the same text report.md shows)."""
    sizes = summary["sizes"]
    multi = multi_seed(summary)
    val = pd.DataFrame([{
        **_first(summary, r), "seeds": r["n_seeds"], "best epoch": ", ".join(map(str, r["best_epoch"])),
        "val AUC": _ms(r, "val_auc"), "val ACC": _ms(r, "val_acc"), "val macro-F1": _ms(r, "val_macro_f1"),
        "val micro-F1": _ms(r, "val_micro_f1"), "val loss": _ms(r, "val_loss")} for r in sizes])
    ci = "mean ± std over seeds" if multi else f"{int(100 * summary.get('ci_level', 0.95))}% bootstrap CI"
    test = pd.DataFrame([{
        **_first(summary, r), f"test AUC ({ci})": _with_ci(r, "test_auc"),
        f"test ACC ({ci})": _with_ci(r, "test_acc"), "test macro-F1 (val-tuned thresholds)": _ms(r, "test_macro_f1"),
        "AUC undefined": ", ".join(u["name"] for u in r["auc_undefined_classes"]) or "-"} for r in sizes])
    cuda = any(r.get("cuda_peak_mb") is not None for r in sizes)
    cost = pd.DataFrame([{
        **_first(summary, r), "params": _num(r["params"], ",.0f"), "GFLOPs/image": _f(r["gflops"], 4),
        "s/epoch": _ms(r, "seconds_per_epoch", 1), "train img/s": _ms(r, "train_images_per_s", 0),
        "inference ms/image": _f(r.get("inference_ms_per_image"), 3),
        "peak RSS MB": _num(r.get("peak_rss_mb"), ",.0f"),
        **({"peak GPU MB": _num(r.get("cuda_peak_mb"), ",.0f")} if cuda else {}),
        "dataset MB": _num(r.get("data_mb"), ",.0f"),
        "device": r["device"] + (f" x{r['world_size']}" if r.get("world_size", 1) > 1 else "")} for r in sizes])
    calib = pd.DataFrame([{
        **_first(summary, r), "seeds": r["n_seeds"], "ECE (pooled)": _ms(r, "test_ece"),
        "ECE (macro)": _ms(r, "test_ece_macro"), "Brier": _ms(r, "test_brier"),
        "sensitivity at 90% specificity": _ms(r, "test_sens_at_spec90"),
        "sensitivity at 95% specificity": _ms(r, "test_sens_at_spec95")} for r in sizes])
    return {"Table 1: validation at the best epoch": val, "Test": test, "Calibration and operating points": calib,
            "Differences": differences_table(summary), "Cost": cost}


def _p(value) -> str:
    """A p-value as text: never floored, small ones in scientific notation."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def differences_table(summary: dict) -> pd.DataFrame:
    """The paired differences (core.study.differences) as display text: raw and family-adjusted p side by side."""
    diff = summary.get("differences") or {}
    adjusted = f"p ({(diff.get('correction') or 'holm').replace('bh', 'BH').replace('holm', 'Holm')})"
    columns = ["family", "comparison", "a", "b", "delta AUC", "95% CI", "p", adjusted, "verdict",
               "non-inferiority", "seeds needed", "left out"]
    return pd.DataFrame([{
        "family": r.get("family", "-"), "comparison": r["kind"], "a": f"{r['a']} (n={r['n_runs_a']})",
        "b": f"{r['b']} (n={r['n_runs_b']})", "delta AUC": _f(r.get("delta")),
        "95% CI": f"[{_f(r.get('ci_low'))}, {_f(r.get('ci_high'))}]" if r["paired"] else "-",
        "p": _p(r.get("p_value")), adjusted: _p(r.get("p_adjusted")), "verdict": r["verdict"],
        "non-inferiority": r.get("noninferiority") or "-", "seeds needed": r.get("seeds_needed") or "-",
        "left out": "; ".join(r.get("classes_excluded") or []) or "-"} for r in diff.get("rows") or []],
        columns=columns)


def per_class_table(summary: dict) -> pd.DataFrame:
    """Per class: test positives, then per row its mean test AUC and sensitivity at 90% specificity."""
    rows = summary["sizes"]
    classes = list(rows[0]["test_auc_per_class"]) if rows else []
    positives = rows[0].get("test_positives") or {} if rows else {}
    return pd.DataFrame([{
        "class": c, "test positives": _num(positives.get(c), ",.0f"),
        **{f"{row_label(summary, r)} AUC / sens@90%spec": f"{_f(r['test_auc_per_class'].get(c), 2)} / "
           f"{_f((r.get('test_per_class_ops') or {}).get(c, {}).get('sens_at_spec90'), 2)}" for r in rows}}
        for c in classes])


def markdown_table(df: pd.DataFrame) -> str:
    cells = [list(map(str, df.columns))] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in df.columns) + "|")
    return "\n".join(lines)
