"""Altair charts of runs, shared by Compare and the run page. Not a page (app.py lists the pages).

Colours are categorical per series (one per run, or one per seed group), in the order the caller
gives, so a run keeps its colour in every chart of a page. Streamlit's chart toolbar saves any
chart as PNG ("Download as PNG"); vega-embed's own menu is off in Streamlit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import altair as alt
import pandas as pd

from core.data import chestmnist as D

SPLIT_DASH = alt.Scale(domain=["val", "train"], range=[[1, 0], [5, 3]])
# The split legend draws line samples (solid / dashed), not the points' dots, so it shows the dash.
SPLIT_LEGEND = alt.Legend(symbolType="stroke", symbolStrokeColor="#555", symbolStrokeWidth=2, symbolSize=300)
PANEL_W, PANEL_H = 235, 170  # overlay panels: three to a row fit a 1400 px window beside the sidebar
LABEL_LIMIT = 420  # legend labels in pixels: full run names ("64 px · res-cnn · seed 2"), not "64 px · r…"


def colour_scale(order: list[str]) -> alt.Scale:
    """Distinct categorical colours: tableau10 for up to ten series, tableau20 beyond."""
    return alt.Scale(domain=order, scheme="tableau10" if len(order) <= 10 else "tableau20")


def _legend(title: str) -> alt.Legend:
    # symbolOpacity: a legend merged from a line and its faint seed band drew faded swatches
    return alt.Legend(title=title, labelLimit=LABEL_LIMIT, columns=2, symbolOpacity=1)


@dataclass(frozen=True)
class CurveView:
    """How the curves are drawn: the x axis (a column of compare_data.epoch_frame and its title) and what the colour
    tells apart (`series`, else a column of run labels, one line per run still)."""

    x: str = "epoch"
    x_title: str = "epoch"
    colour: str = "series"
    colour_title: str = "run"


def x_encoding(view: CurveView) -> alt.X:
    """Epochs as whole numbers; steps and minutes as they come."""
    axis = alt.Axis(tickMinStep=1, format="d") if view.x in ("epoch", "step") else alt.Axis()
    return alt.X(f"{view.x}:Q", axis=axis, title=view.x_title)


def markers(df: pd.DataFrame, view: CurveView, y: alt.Y) -> list[alt.Chart]:
    """On each run's validation curve: an open diamond at the kept (best) checkpoint's epoch, and a dashed rule
    where training resumed after a stop (only where a run did; compare_data.epoch_frame's `best`, `resumed`)."""
    if "best" not in df:  # mean curves of seed groups: no single run's checkpoint
        return []
    tip = ["run", "epoch", alt.Tooltip("value:Q", format=".4f")]
    out = [alt.Chart(df).transform_filter("datum.best && datum.split == 'val'").mark_point(
        shape="diamond", size=120, filled=False, color="#222", strokeWidth=1.5).encode(
        x=x_encoding(view), y=y, tooltip=[alt.Tooltip("series:N", title="kept checkpoint of")] + tip)]
    if df["resumed"].any():
        out.append(alt.Chart(df).transform_filter("datum.resumed && datum.split == 'val'").mark_rule(
            strokeDash=[2, 3], color="#999").encode(x=x_encoding(view), tooltip=[
                alt.Tooltip("series:N", title="resumed after a stop")] + tip))
    return out


def _hover_rule(df: pd.DataFrame, order: list[str], name: str, x: str = "epoch") -> alt.Chart:
    """A vertical rule at the `x` nearest the pointer, its tooltip listing every series there (train and val): the
    logged value and the smoothed one, which the lines draw.

    Each epoch's tooltip is one object built here (`tip`, keyed by the full series names): a series without that
    epoch (a run that ended earlier) has no key in it, where a Vega pivot gave it an empty field that read "NaN".
    """
    per_x: dict[float, dict] = {}
    rank = {s: i for i, s in enumerate(order)}
    for s, sp, at, value, raw in sorted(zip(df["series"], df["split"], df[x].astype(float), df["value"], df["raw"]),
                                        key=lambda r: (r[2], rank[r[0]], r[1] != "val")):
        # epochs and steps read as whole numbers ("epoch 3", not "3.0"), wall time to a tenth of a minute
        shown = int(at) if x in ("epoch", "step") else round(at, 1)
        tip = per_x.setdefault(at, {x: at, "tip": {x: shown}})["tip"]
        tip[f"{s} ({sp})"] = f"{raw:.4f} logged, {value:.4f} smoothed"
    hover = alt.selection_point(name=name, nearest=True, on="pointerover", fields=[x], empty=False,
                                clear="pointerout")
    return alt.Chart(alt.Data(values=list(per_x.values()))).mark_rule(color="#888").encode(
        x=f"{x}:Q", opacity=alt.condition(hover, alt.value(0.6), alt.value(0)), tooltip="tip:N").add_params(hover)


def _colour(df: pd.DataFrame, order: list[str], view: CurveView) -> alt.Color:
    if view.colour == "series":
        return alt.Color("series:N", sort=order, scale=colour_scale(order), legend=_legend(view.colour_title))
    values = sorted(df[view.colour].dropna().unique(), key=_natural)  # size=28 before size=128
    return alt.Color(f"{view.colour}:N", sort=values, scale=colour_scale(values), legend=_legend(view.colour_title))


def _panel(df: pd.DataFrame, bands: pd.DataFrame | None, order: list[str], label: str, i: int,
           log_loss: bool, view: CurveView = CurveView()) -> alt.LayerChart:
    """One metric: a line per series (dash = split) with points, seed bands if given, and the hover readout."""
    df = df[df["metric"] == label]
    log = log_loss and label == "loss" and bool(len(df)) and float(df["value"].min()) > 0
    # nice=False: a log scale rounded out to powers of ten drew losses near 1 flat across 0.1-10
    scale, title = (alt.Scale(type="log", nice=False), "log scale") if log else (alt.Scale(zero=False), None)
    y = alt.Y("value:Q", scale=scale, title=title)
    x = x_encoding(view)
    color = _colour(df, order, view)
    tooltip = ["series", "run", "split", "epoch", alt.Tooltip("value:Q", format=".4f"),
               alt.Tooltip("raw:Q", format=".4f", title="logged (unsmoothed)")]
    layers = []
    if bands is not None:
        b = bands[bands["metric"] == label]
        layers.append(alt.Chart(b).mark_area(opacity=0.18).encode(
            x=x, y=alt.Y("lo:Q", scale=scale, title=title), y2="hi:Q", detail="split:N",
            color=alt.Color("series:N", sort=order, scale=colour_scale(order), legend=_legend(view.colour_title))))
    enc = dict(x=x, y=y, color=color, tooltip=tooltip)
    # Points as their own layer, without the dash: on one mark (line with point overlay) the split
    # legend drew the points' dots for val and train alike, hiding the dash that tells them apart.
    # detail: runs sharing a colour (coloured by a setting) still draw a line each.
    layers += [alt.Chart(df).mark_line().encode(
                   strokeDash=alt.StrokeDash("split:N", scale=SPLIT_DASH, legend=SPLIT_LEGEND), detail="series:N", **enc),
               alt.Chart(df).mark_point(filled=True, size=20).encode(detail="split:N", **enc),
               *markers(df, view, y), _hover_rule(df, order, f"hover{i}", view.x)]
    return alt.layer(*layers).properties(width=PANEL_W, height=PANEL_H, title=label)


def curves_chart(df: pd.DataFrame, order: list[str], labels: list[str], overlay: bool = True,
                 bands: pd.DataFrame | None = None, log_loss: bool = False,
                 view: CurveView = CurveView()) -> alt.TopLevelMixin:
    """Every logged per-epoch metric. `df`: core rows of compare_data.epoch_frame, with `series` the colour
    (a run, or a seed group's mean when `bands`, compare_data.band_frame renamed, gives mean ± sd).

    Overlay: one panel per metric (rows of three, then two: a 3-column facet of five drew an x axis
    under its empty sixth cell); else small multiples, one row per metric and one column per series.
    """
    if overlay:
        panels = [_panel(df, bands, order, label, i, log_loss, view) for i, label in enumerate(labels)]
        rows = [alt.hconcat(*panels[i:i + 3]) for i in range(0, len(panels), 3)]
        return alt.vconcat(*rows).resolve_scale(y="independent").configure_legend(orient="top")
    color = _colour(df, order, view)
    enc = dict(x=x_encoding(view),
               y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=None), color=color,
               tooltip=["series", "run", "split", "epoch", alt.Tooltip("value:Q", format=".4f")])
    base = alt.layer(
        alt.Chart(df).mark_line().encode(strokeDash=alt.StrokeDash("split:N", scale=SPLIT_DASH, legend=SPLIT_LEGEND),
                                         **enc),
        alt.Chart(df).mark_point(filled=True, size=20).encode(detail="split:N", **enc))
    rows = [base.transform_filter(alt.datum.metric == label).properties(width=170, height=140)
            .facet(column=alt.Column("series:N", sort=order, title=None)).properties(title=label) for label in labels]
    return alt.vconcat(*rows).configure_legend(orient="top")


def tradeoff_chart(points: pd.DataFrame, x_title: str, order: list[str]) -> alt.LayerChart:
    """Test AUC against cost on a log x axis: each run (95% CI bar, small point) and each seed group
    (mean ± sd bar over its runs, large diamond), coloured by group.

    `points`: rows with kind ("run"/"group"), group, name, x, auc, lo, hi (lo/hi: the run's CI or
    the group's mean ± sd), runs.
    """
    color = alt.Color("group:N", sort=order, scale=colour_scale(order), legend=_legend("group"))
    x = alt.X("x:Q", scale=alt.Scale(type="log"), title=f"{x_title} (log scale)")
    y = alt.Y("auc:Q", scale=alt.Scale(zero=False), title="test AUC (medmnist)")
    tooltip = ["kind", "name", "group", alt.Tooltip("auc:Q", format=".4f", title="test AUC (mean for a group)"),
               alt.Tooltip("lo:Q", format=".4f", title="low (run: 95% CI; group: mean - sd)"),
               alt.Tooltip("hi:Q", format=".4f", title="high (run: 95% CI; group: mean + sd)"),
               alt.Tooltip("runs:Q", title="runs"), alt.Tooltip("x:Q", format=".4g", title=x_title)]
    base = alt.Chart(points).encode(x=x, color=color, tooltip=tooltip)
    run, group = alt.datum.kind == "run", alt.datum.kind == "group"
    return alt.layer(
        base.transform_filter(run).mark_rule(strokeWidth=1, opacity=0.5).encode(
            y=alt.Y("lo:Q", scale=alt.Scale(zero=False)), y2="hi:Q"),
        base.transform_filter(run).mark_point(filled=True, size=40, opacity=0.6).encode(y=y),
        base.transform_filter(group).mark_rule(strokeWidth=4).encode(y=alt.Y("lo:Q", scale=alt.Scale(zero=False)),
                                                                     y2="hi:Q"),
        base.transform_filter(group).mark_point(filled=True, size=160, shape="diamond", stroke="black",
                                                strokeWidth=0.5).encode(y=y),
    ).properties(height=320)


HEAT_ROW_PX = 24  # a finding's row in the per-class heatmap; heat_height adds the run labels and the legend
HEAT_TEXT_MIN_PX = 34  # narrowest cell that holds its AUC ("0.73") without touching the next


def heat_height() -> int:
    """The per-class heatmap's height for st.altair_chart: Streamlit otherwise squeezes it into its default."""
    return HEAT_ROW_PX * len(D.CLASS_NAMES) + 120


def _natural(label: str) -> list:
    """Sort key reading the numbers in a label as numbers: 28 px · s2 before 28 px · s10, 28 px before 128 px."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", label) if t]


def heat_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Test AUC per class (rows, every finding named) and run (columns by size then seed, `short` labels over two
    lines, level; the full name in the tooltip); grey where undefined. The AUC is written in a cell only where
    it fits.

    `df`: rows of compare.per_class_frame (with `short`).
    """
    short_order = sorted(set(df["short"]), key=_natural)
    base = alt.Chart(df).encode(
        x=alt.X("short:N", sort=short_order, title=None,
                axis=alt.Axis(orient="top", labelAngle=0, labelExpr="split(datum.label, ' · ')", labelOverlap=False,
                              labelLimit=80, domain=False, ticks=False)),
        y=alt.Y("class:N", sort=list(D.CLASS_NAMES), title=None, axis=alt.Axis(labelOverlap=False, labelLimit=200)),
        tooltip=["class", alt.Tooltip("series:N", title="run"), "run id",
                 alt.Tooltip("positives:Q", title="test positives"), alt.Tooltip("test AUC:N", title="test AUC (95% CI)")])
    defined = base.transform_filter("isValid(datum.auc)").mark_rect().encode(
        color=alt.Color("auc:Q", scale=alt.Scale(scheme="viridis"), title="test AUC",
                        legend=alt.Legend(orient="bottom", direction="horizontal", gradientLength=240)))
    undefined = base.transform_filter("!isValid(datum.auc)").mark_rect(color="#d9d9d9")
    text = base.mark_text(fontSize=11).encode(
        text="label:N",
        opacity=alt.condition(f"bandwidth('x') >= {HEAT_TEXT_MIN_PX}", alt.value(1), alt.value(0)),
        color=alt.condition("isValid(datum.auc) && datum.auc < 0.75", alt.value("white"), alt.value("black")))
    return (defined + undefined + text).properties(height=HEAT_ROW_PX * len(D.CLASS_NAMES))


def reliability_chart(df: pd.DataFrame, order: list[str]) -> alt.LayerChart:
    """Reliability diagram: share of positives against mean predicted probability per bin, one line per
    run, point size = pairs in the bin; the diagonal is perfect calibration."""
    diagonal = alt.Chart(pd.DataFrame({"p": [0.0, 1.0]})).mark_line(color="#999", strokeDash=[4, 4]).encode(
        x="p:Q", y="p:Q")
    enc = dict(x=alt.X("mean_score:Q", scale=alt.Scale(domain=[0, 1]), title="mean predicted probability"),
               y=alt.Y("frac_pos:Q", scale=alt.Scale(domain=[0, 1]), title="share of positives"),
               color=alt.Color("series:N", sort=order, scale=colour_scale(order), legend=_legend("run")),
               tooltip=["series", alt.Tooltip("bin:N", title="bin"), alt.Tooltip("count:Q", title="pairs"),
                        alt.Tooltip("mean_score:Q", format=".3f"), alt.Tooltip("frac_pos:Q", format=".3f")])
    line = alt.Chart(df).mark_line().encode(**enc)
    points = alt.Chart(df).mark_point(filled=True).encode(size=alt.Size("count:Q", title="pairs in bin"), **enc)
    return (diagonal + line + points).properties(height=340)


def effective_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Test AUC against (effective) resolution on a log x axis: the larger model tested at each effective size
    (line, with the paired 95% interval of its change as a band around it), and runs trained at each size
    (diamonds, mean ± sd over seeds).

    `df`: rows with series, size, auc, lo, hi, kind ("tested at r" / "trained at r").
    """
    order = sorted(df["series"].unique())
    color = alt.Color("series:N", sort=order, scale=colour_scale(order),
                      legend=alt.Legend(title=None, orient="top", direction="vertical", labelLimit=LABEL_LIMIT))
    x = alt.X("size:Q", scale=alt.Scale(type="log", nice=False), title="image size seen by the model (px, log scale)",
              axis=alt.Axis(values=sorted(df["size"].unique().tolist())))
    y = alt.Y("auc:Q", scale=alt.Scale(zero=False), title="test AUC (medmnist)")
    tooltip = ["series", alt.Tooltip("size:Q", title="px"), alt.Tooltip("auc:Q", format=".4f", title="test AUC"),
               alt.Tooltip("lo:Q", format=".4f", title="low"), alt.Tooltip("hi:Q", format=".4f", title="high")]
    base = alt.Chart(df).encode(x=x, color=color, tooltip=tooltip)
    tested, trained = alt.datum.kind == "tested at r", alt.datum.kind == "trained at r"
    return alt.layer(
        base.transform_filter(tested).mark_area(opacity=0.15).encode(y=alt.Y("lo:Q", scale=alt.Scale(zero=False)),
                                                                     y2="hi:Q"),
        base.transform_filter(tested).mark_line(point=True).encode(y=y),
        base.transform_filter(trained).mark_rule(strokeWidth=3).encode(y=alt.Y("lo:Q", scale=alt.Scale(zero=False)),
                                                                       y2="hi:Q"),
        base.transform_filter(trained).mark_point(filled=True, size=160, shape="diamond", stroke="black",
                                                  strokeWidth=0.5).encode(y=y),
    ).properties(height=320)


def findings_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Per finding, the paired change in test AUC with its 95% interval, sorted by gain, coloured by verdict.

    `df`: rows with finding, delta, lo, hi, verdict, positives, p, p_adjusted.
    """
    order = df.sort_values("delta", ascending=False)["finding"].tolist()
    y = alt.Y("finding:N", sort=order, title=None, axis=alt.Axis(labelLimit=LABEL_LIMIT))
    verdicts = ["gain", "loss", "not distinguishable"]
    color = alt.Color("verdict:N", scale=alt.Scale(domain=verdicts, range=["#2ca02c", "#d62728", "#999999"]),
                      legend=alt.Legend(title="verdict (p adjusted over the findings)", orient="top", titleLimit=LABEL_LIMIT))
    tooltip = ["finding", alt.Tooltip("delta:Q", format="+.4f", title="change in AUC"),
               alt.Tooltip("lo:Q", format="+.4f", title="95% low"), alt.Tooltip("hi:Q", format="+.4f", title="95% high"),
               alt.Tooltip("positives:Q", title="test positives"), alt.Tooltip("p:Q", format=".3g", title="p"),
               alt.Tooltip("p_adjusted:Q", format=".3g", title="p adjusted (Holm)"), "verdict"]
    base = alt.Chart(df).encode(y=y, color=color, tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#555").encode(x="x:Q")
    return alt.layer(
        zero,
        base.mark_rule(strokeWidth=2).encode(x=alt.X("lo:Q", title="change in test AUC (95% interval)"), x2="hi:Q"),
        base.mark_point(filled=True, size=80).encode(x="delta:Q"),
    ).properties(height=max(160, 24 * len(df)))


def frontier_chart(df: pd.DataFrame, x_title: str) -> alt.LayerChart:
    """Images or pixels: test AUC (mean ± sd over seeds) against training compute, one point per size and subset
    labelled by them, coloured by size, and the Pareto frontier as a dashed step line (log x axis).

    `df`: rows with label, size, x, auc, lo, hi, front (bool: on the frontier of this axis).
    """
    sizes = sorted(df["size"].unique().tolist())
    color = alt.Color("size:O", scale=alt.Scale(domain=sizes, scheme="viridis"), legend=alt.Legend(title="px"))
    x = alt.X("x:Q", scale=alt.Scale(type="log", nice=False), title=x_title + " (log scale)")
    y = alt.Y("auc:Q", scale=alt.Scale(zero=False), title="test AUC (medmnist, mean over seeds)")
    tooltip = ["label", alt.Tooltip("x:Q", format=",.3g", title=x_title),
               alt.Tooltip("auc:Q", format=".4f", title="test AUC"), alt.Tooltip("front:N", title="on the frontier")]
    base = alt.Chart(df).encode(x=x, y=y, tooltip=tooltip)
    return alt.layer(
        base.transform_filter(alt.datum.front).mark_line(interpolate="step-after", strokeDash=[5, 3], color="black"),
        base.mark_rule(strokeWidth=2).encode(color=color, y=alt.Y("lo:Q", scale=alt.Scale(zero=False)), y2="hi:Q"),
        base.mark_point(filled=True, size=140).encode(color=color, shape=alt.Shape(
            "front:N", scale=alt.Scale(domain=[True, False], range=["diamond", "circle"]),
            legend=alt.Legend(title="on the Pareto frontier"))),
        base.mark_text(align="left", dx=9, dy=-9, fontSize=11).encode(text="label:N"),
    )
