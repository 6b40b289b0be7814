"""The study report's resolution sections: which pixels matter (the largest size's effective-resolution curve,
information or training at each smaller size, which findings gain from resolution) and multi-scale
ensembles against their same-size control (core.evaluate.effective, core.evaluate.ensemble)."""
from __future__ import annotations

from typing import Any

from core.errors import UserError
from core.evaluate import effective as EF
from core.evaluate.ensemble import multiscale_study
from core.files import to_jsonable
from core.metrics import verdict
from core.runs import groups as G


def resolution_sections(records: list[dict], effective: bool, ensembles: bool, n_boot: int, device: str = "auto") -> dict:
    """{"effective": ..., "ensembles": ...} for the first candidate's seed groups, each left out when not asked
    for or when the runs cannot give it (the reason is kept under "note")."""
    first = records[0]["candidate"]
    by_size: dict[int, list[str]] = {}
    for r in records:
        if r["candidate"] == first:
            by_size.setdefault(r["size"], []).append(r["run_dir"])
    out: dict[str, Any] = {}
    if effective:
        try:
            out["effective"] = _effective(by_size, n_boot, device)
        except UserError as e:
            out["effective"] = {"note": f"not computed: {e}"}
    if ensembles:
        try:
            out["ensembles"] = _ensembles(by_size, n_boot) if len(by_size) > 1 else {
                "note": "a multi-scale ensemble needs runs at two or more sizes"}
        except UserError as e:
            out["ensembles"] = {"note": f"not computed: {e}"}
    return to_jsonable(out)


def _effective(by_size: dict[int, list[str]], n_boot: int, device: str) -> dict:
    top = max(by_size)
    lower = sorted(s for s in by_size if s < top)
    sizes = sorted({r for r in EF.GRID if r < top} | set(lower))
    curve = [{k: p[k] for k in ("effective_size", "source", "auc", "native_auc", "delta", "ci", "p_value", "per_class")}
             for p in EF.effective_curve(by_size[top], sizes, n_boot=n_boot, device=device)]
    gaps = [{k: g[k] for k in ("trained_at", "tested_from", "source", "delta", "ci", "p_value", "words")}
            for g in (EF.information_or_training(by_size[r], by_size[top], r, n_boot=n_boot) for r in lower)]
    findings = None
    if lower:
        rows, apart = EF.finding_rows(G.group_difference(by_size[top], by_size[lower[0]], n_boot=n_boot))
        findings = {"a": top, "b": lower[0], "rows": rows, "apart": apart}
    return {"size": top, "runs": len(by_size[top]), "curve": curve, "gaps": gaps, "findings": findings}


def _ensembles(by_size: dict[int, list[str]], n_boot: int) -> dict:
    out = multiscale_study(by_size, n_boot=n_boot)
    name = "+".join(f"{s}" for s in out["sizes"]) + " px ensemble"
    best = f"{out['best_size']} px"
    control = f"{out['members']} models at {best}"
    return {"sizes": out["sizes"], "ensembles": out["ensembles"], "best_size": out["best_size"],
            "vs_best_size": _said(out["vs_best_size"], name, best),
            "vs_control": _said(out["vs_control"], name, control),
            "control_overlap": out["control_overlap"], "cost": out["cost"],
            "delta_vs_control": out["vs_control"]["delta"], "ci_vs_control": out["vs_control"]["ci"]}


def _said(result: dict, a: str, b: str) -> str:
    """core.metrics.verdict, naming both sides where the verdict itself does not ("not distinguishable")."""
    text = verdict(result, a, b)
    return text if text.startswith((a, b)) else f"{a} against {b}: {text}"


def markdown(sections: dict) -> list[str]:
    """The report's lines for these sections (none when the study asked for neither)."""
    L: list[str] = []
    eff = sections.get("effective")
    if eff:
        L += ["## Which pixels matter", ""]
        if "note" in eff:
            L += [f"Effective resolution {eff['note']}.", ""]
        else:
            L += [f"The {eff['size']} px runs ({eff['runs']}) scored on their test images brought down to each smaller "
                  "size and back up (bicubic; 'file': the data folder's own smaller file brought up), paired against "
                  "their own scores, seed-aware:", "", "| effective size | source | test AUC | change | 95% CI | p |",
                  "| --- | --- | --- | --- | --- | --- |"]
            L += [f"| {p['effective_size']} px | {p['source']} | {_f(p['auc'])} | {_f(p['delta'], '+.4f')} | "
                  f"[{_f(p['ci'][0], '+.4f')}, {_f(p['ci'][1], '+.4f')}] | {_f(p['p_value'], '.3g')} |" for p in eff["curve"]]
            L += [""] + [f"- **{g['trained_at']} px**: {g['words']}" for g in eff["gaps"]] + [""]
            if eff["findings"]:
                f = eff["findings"]
                L += [f"Per finding, test AUC at {f['a']} px minus {f['b']} px (p adjusted over the findings, Holm):", "",
                      "| finding | change | 95% CI | test positives | p adjusted | verdict |", "| --- | --- | --- | --- | --- | --- |"]
                L += [f"| {r['finding']} | {_f(r['delta'], '+.4f')} | [{_f(r['ci_low'], '+.4f')}, {_f(r['ci_high'], '+.4f')}] | "
                      f"{r['positives']} | {_f(r['p_adjusted'], '.3g')} | {r['verdict']} |" for r in f["rows"]]
                if f["apart"]:
                    L += ["", "Too few test positives for a verdict: "
                          + ", ".join(f"{r['finding']} ({r['positives']})" for r in f["apart"]) + "."]
                L += [""]
    ens = sections.get("ensembles")
    if ens:
        L += ["## Multi-scale ensembles", ""]
        if "note" in ens:
            L += [f"Ensembles: {ens['note']}.", ""]
        else:
            c = ens["cost"]
            L += [f"{ens['ensembles']} ensemble(s) averaging one run at each of {', '.join(map(str, ens['sizes']))} px:",
                  "", f"- against the best single size: {ens['vs_best_size']}",
                  f"- against as many models at {ens['best_size']} px (the control: ensembles help whatever the sizes): "
                  f"{ens['vs_control']}" + (" (the controls share members, so this interval is too narrow)"
                                            if ens["control_overlap"] else ""),
                  f"- cost per image: {c['ensemble']['gflops']:.3f} GFLOPs for the ensemble, "
                  f"{c['control']['gflops']:.3f} for the control, {c['best_size']['gflops']:.3f} for one model", ""]
    return L


def _f(x: float | None, fmt: str = ".4f") -> str:
    return "—" if x is None else format(x, fmt)
