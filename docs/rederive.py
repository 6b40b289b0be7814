"""Re-derive docs/selection.md's and docs/results.md's verdicts with seed variance, from their summary statistics.

The run folders of those studies are gone, so the scores cannot be resampled again. What the docs kept
is enough for the two-level variance of core.metrics.seed_group_difference: each cell's mean ± sd over
its 5 seeds (the seed part) and each old paired 95% percentile interval, whose width / 3.92 is the
image-bootstrap standard error of the difference (the image part). Every row below is
``core.metrics.t_interval(delta, se_img**2, sd_a**2, sd_b**2, 5, 5)``: Student t with Welch-Satterthwaite
degrees of freedom, with Holm over the row's declared family; Welch's t on the per-seed AUCs alone
(scipy.stats.ttest_ind_from_stats) is printed beside it as a check. Primary rows also get non-inferiority
at a 0.01 AUC margin and seeds needed. Run: ``python docs/rederive.py`` (prints Markdown).
"""
from __future__ import annotations

import sys
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core import metrics  # noqa: E402  (run as a script from anywhere)

# cell -> (mean, sd) over 5 seeds, as docs/selection.md lists them
CELLS = {
    "1667 res-cnn 28": (0.647, 0.013), "1667 res-cnn 64": (0.638, 0.014),
    "1667 seed-cnn 28": (0.595, 0.044), "1667 seed-cnn 64": (0.506, 0.013),
    "1667 resnet18 28": (0.639, 0.020), "1667 resnet18 64": (0.622, 0.011),
    "1667 narrow 28": (0.641, 0.017), "1667 narrow 64": (0.637, 0.021),
    "1667 wide 28": (0.634, 0.010), "1667 wide 64": (0.643, 0.019),
    "1667 3stage 28": (0.630, 0.017), "1667 3stage 64": (0.629, 0.013),
    "1667 fast-stem 28": (0.625, 0.016), "1667 fast-stem 64": (0.630, 0.015),
    "1667 drop0 28": (0.642, 0.015), "1667 drop0 64": (0.636, 0.022),
    "1667 drop0.5 28": (0.641, 0.009), "1667 drop0.5 64": (0.641, 0.009),
    "1667 wd0.5 28": (0.625, 0.016), "1667 wd0.5 64": (0.636, 0.022),
    "1667 cosine 28": (0.638, 0.014), "1667 cosine 64": (0.634, 0.022),
    "1667 e30 28": (0.646, 0.013), "1667 e30 64": (0.638, 0.014),
    "1667 noaug 28": (0.622, 0.023), "1667 noaug 64": (0.614, 0.024),
    "667 res-cnn 28": (0.564, 0.019), "667 res-cnn 64": (0.567, 0.009),
    "667 res-cnn 128": (0.576, 0.011), "667 res-cnn 224": (0.578, 0.006),
    "667 seed-cnn 128": (0.514, 0.023), "667 seed-cnn 224": (0.514, 0.019),
    "667 narrow 28": (0.570, 0.006), "667 narrow 64": (0.567, 0.012),
    "667 narrow 128": (0.565, 0.013), "667 narrow 224": (0.559, 0.011),
    "667 cosine 28": (0.579, 0.012), "667 cosine 64": (0.568, 0.010),
    "667 cosine 128": (0.575, 0.012), "667 cosine 224": (0.577, 0.005),
    "S1 1667 res-cnn 28": (0.647, 0.018), "S1 1667 res-cnn 64": (0.646, 0.022),
    "S1 1667 seed-cnn 28": (0.610, 0.018), "S1 1667 seed-cnn 64": (0.506, 0.024),
    "S1 667 res-cnn 28": (0.567, 0.015), "S1 667 res-cnn 64": (0.565, 0.014),
    "S1 667 seed-cnn 28": (0.533, 0.014), "S1 667 seed-cnn 64": (0.519, 0.029),
    "S1 667 b128 28": (0.545, 0.056), "S1 667 b128 64": (0.545, 0.018),
}
PRIMARY = "primary NIH-667: res-cnn, each size vs 224 px"
# (family, a, b, old delta, old 95% CI low, high); a - b. An interval of None: no paired interval was
# recorded for the pair, and the image part is taken as the largest of that model's measured size pairs.
ROWS = [(PRIMARY, "667 res-cnn 28", "667 res-cnn 224", -0.014, -0.039, 0.010),
        (PRIMARY, "667 res-cnn 64", "667 res-cnn 224", -0.011, None, None),
        (PRIMARY, "667 res-cnn 128", "667 res-cnn 224", -0.002, -0.022, 0.017),
        ("primary NIH-1667: res-cnn, 28 vs 64 px", "1667 res-cnn 28", "1667 res-cnn 64", 0.008, -0.004, 0.020)]
VS_RES = {"resnet18": ((-0.008, -0.019, 0.005), (-0.016, -0.033, -0.001)),
          "narrow": ((-0.006, -0.016, 0.004), (-0.001, -0.010, 0.007)),
          "wide": ((-0.013, -0.025, -0.002), (0.004, -0.006, 0.014)),
          "3stage": ((-0.017, -0.031, -0.004), (-0.009, -0.023, 0.004)),
          "fast-stem": ((-0.021, -0.036, -0.006), (-0.008, -0.022, 0.006)),
          "drop0": ((-0.005, -0.015, 0.005), (-0.003, -0.014, 0.008)),
          "drop0.5": ((-0.006, -0.016, 0.003), (0.002, -0.006, 0.010)),
          "wd0.5": ((-0.022, -0.031, -0.013), (-0.002, -0.010, 0.005)),
          "cosine": ((-0.009, -0.018, -0.001), (-0.004, -0.012, 0.004)),
          "e30": ((-0.000, -0.004, 0.003), (0.000, 0.000, 0.000)),
          "noaug": ((-0.025, -0.044, -0.007), (-0.025, -0.040, -0.008))}
ROWS += [("NIH-1667 vs res-cnn", f"1667 {v} {s}", f"1667 res-cnn {s}", *old)
         for v, pair in VS_RES.items() for s, old in zip((28, 64), pair)]
ROWS += [("NIH-1667 vs resnet18", "1667 narrow 28", "1667 resnet18 28", 0.002, -0.009, 0.014),
         ("NIH-1667 vs resnet18", "1667 narrow 64", "1667 resnet18 64", 0.015, -0.002, 0.032),
         ("NIH-1667 vs resnet18", "1667 fast-stem 28", "1667 resnet18 28", -0.014, -0.030, 0.002),
         ("NIH-1667 vs resnet18", "1667 fast-stem 64", "1667 resnet18 64", 0.008, -0.005, 0.022)]
ROWS += [("NIH-667 vs res-cnn", f"667 {v} {s}", f"667 res-cnn {s}", *old) for v, olds in {
    "narrow": ((0.006, -0.010, 0.020), (0.000, -0.018, 0.017), (-0.011, -0.028, 0.005), (-0.019, -0.029, -0.007)),
    "cosine": ((0.015, 0.005, 0.025), (0.001, -0.011, 0.013), (-0.001, -0.011, 0.008), (-0.001, -0.008, 0.007)),
}.items() for s, old in zip((28, 64, 128, 224), olds)]
VS_SEED = {"res-cnn": ((0.051, 0.033, 0.069), (0.133, 0.107, 0.159)),
           "resnet18": ((0.044, 0.026, 0.061), (0.117, 0.091, 0.141)),
           "narrow": ((0.046, 0.028, 0.064), (0.132, 0.105, 0.158)),
           "wide": ((0.038, 0.019, 0.057), (0.137, 0.112, 0.162)),
           "3stage": ((0.035, 0.015, 0.053), (0.124, 0.095, 0.150)),
           "fast-stem": ((0.030, 0.011, 0.047), (0.125, 0.098, 0.151)),
           "drop0": ((0.047, 0.028, 0.064), (0.130, 0.106, 0.156)),
           "drop0.5": ((0.045, 0.029, 0.063), (0.135, 0.108, 0.163)),
           "wd0.5": ((0.029, 0.011, 0.048), (0.131, 0.106, 0.156)),
           "cosine": ((0.042, 0.024, 0.060), (0.129, 0.103, 0.156)),
           "e30": ((0.051, 0.032, 0.069), (0.133, 0.107, 0.159)),
           "noaug": ((0.026, 0.006, 0.045), (0.108, 0.085, 0.131))}
# The default's own comparisons with the baseline are one family (issue #12's target); the variants' are another.
ROWS += [("res-cnn vs seed-cnn" if v == "res-cnn" else "variants vs seed-cnn", f"1667 {v} {s}", f"1667 seed-cnn {s}",
          *old) for v, pair in VS_SEED.items() for s, old in zip((28, 64), pair)]
ROWS += [("res-cnn vs seed-cnn" if v == "res-cnn" else "variants vs seed-cnn", f"667 {v} {s}", f"667 seed-cnn {s}",
          *old) for v, olds in {
    "res-cnn": ((0.062, 0.026, 0.100), (0.064, 0.025, 0.101)), "narrow": ((0.051, 0.014, 0.086), (0.045, 0.008, 0.081)),
    "cosine": ((0.061, 0.023, 0.098), (0.063, 0.024, 0.101))}.items() for s, old in zip((128, 224), olds)]
ROWS += [("res-cnn vs seed-cnn", "S1 1667 res-cnn 28", "S1 1667 seed-cnn 28", 0.037, 0.015, 0.057),
         ("res-cnn vs seed-cnn", "S1 1667 res-cnn 64", "S1 1667 seed-cnn 64", 0.141, 0.113, 0.167),
         ("res-cnn vs seed-cnn", "S1 667 res-cnn 28", "S1 667 seed-cnn 28", 0.034, 0.002, 0.068),
         ("res-cnn vs seed-cnn", "S1 667 res-cnn 64", "S1 667 seed-cnn 64", 0.046, 0.008, 0.087),
         ("variants vs seed-cnn", "S1 667 b128 28", "S1 667 seed-cnn 28", 0.011, -0.017, 0.039),
         ("variants vs seed-cnn", "S1 667 b128 64", "S1 667 seed-cnn 64", 0.025, -0.006, 0.059),
         ("batch", "S1 667 b128 28", "S1 667 res-cnn 28", -0.023, -0.041, -0.006),
         ("batch", "S1 667 b128 64", "S1 667 res-cnn 64", -0.020, -0.041, 0.000)]
SIZES_1667 = {"seed-cnn": (-0.090, -0.111, -0.069), "resnet18": (-0.017, -0.033, -0.001),
              "narrow": (-0.004, -0.014, 0.006), "wide": (0.009, -0.002, 0.021), "3stage": (-0.001, -0.012, 0.011),
              "fast-stem": (0.005, -0.005, 0.015), "drop0": (-0.006, -0.019, 0.007), "drop0.5": (-0.000, -0.013, 0.012),
              "wd0.5": (0.012, -0.000, 0.023), "cosine": (-0.003, -0.012, 0.007), "e30": (-0.008, -0.021, 0.005),
              "noaug": (-0.008, -0.022, 0.008)}
ROWS += [("sizes", f"1667 {v} 64", f"1667 {v} 28", *old) for v, old in SIZES_1667.items()]
ROWS += [("sizes", "S1 1667 seed-cnn 64", "S1 1667 seed-cnn 28", -0.105, -0.127, -0.082),
         ("sizes", "S1 667 seed-cnn 64", "S1 667 seed-cnn 28", -0.014, -0.042, 0.014),
         ("sizes", "S1 667 b128 64", "S1 667 b128 28", 0.000, -0.019, 0.019),
         ("sizes", "667 res-cnn 64", "667 res-cnn 28", 0.003, -0.015, 0.019),
         ("sizes", "667 res-cnn 128", "667 res-cnn 28", 0.012, -0.008, 0.031),
         ("sizes", "667 res-cnn 128", "667 res-cnn 64", 0.009, -0.007, 0.026),
         ("sizes", "667 seed-cnn 224", "667 seed-cnn 128", 0.000, -0.016, 0.017)]
ROWS += [("sizes", f"667 {v} {a}", f"667 {v} {b}", *old) for v, olds in {
    "narrow": ((-0.003, -0.017, 0.011), (-0.005, -0.025, 0.014), (-0.002, -0.020, 0.015), (-0.011, -0.036, 0.014),
               (-0.005, -0.026, 0.016)),
    "cosine": ((-0.011, -0.028, 0.004), (-0.005, -0.028, 0.018), (0.006, -0.009, 0.022), (-0.002, -0.028, 0.023),
               (0.003, -0.016, 0.021))}.items()
    for (a, b), old in zip(((64, 28), (128, 28), (128, 64), (224, 28), (224, 128)), olds)]
ROWS += [("non-inferiority: res-cnn vs resnet18", "1667 res-cnn 28", "1667 resnet18 28", 0.008, -0.005, 0.019),
         ("non-inferiority: res-cnn vs resnet18", "1667 res-cnn 64", "1667 resnet18 64", 0.016, 0.001, 0.033)]
MARGIN = 0.01
Z = stats.norm.ppf(0.975)


def rederive(row: tuple) -> dict:
    family, a, b, delta, lo, hi = row
    (mean_a, sd_a), (mean_b, sd_b) = CELLS[a], CELLS[b]
    se_img = 0.0125 if lo is None else (hi - lo) / (2 * Z)  # no interval: res-cnn's widest size pair (224 vs 28)
    ti = metrics.t_interval(delta, se_img ** 2, sd_a ** 2, sd_b ** 2, 5, 5, 0.05)
    result = {"delta": delta, "ci": (ti["ci_low"], ti["ci_high"]), "p_value": ti["p_value"], "se": ti["se"],
              "df": ti["df"], "scope": "recipes", "ci_level": 0.95, "image_var": se_img ** 2, "seed_var_a": sd_a ** 2,
              "seed_var_b": sd_b ** 2, "n_images": 169 if "667" in a.split() else 381, "n_runs_a": 5, "n_runs_b": 5}
    welch = stats.ttest_ind_from_stats(mean_a, sd_a, 5, mean_b, sd_b, 5, equal_var=False).pvalue
    return {"family": family, "a": a, "b": b, "old": "-" if lo is None else f"{delta:+.3f} [{lo:+.3f}, {hi:+.3f}]",
            "result": result, "welch": float(welch)}


def main() -> None:
    out = [rederive(r) for r in ROWS]
    for family in dict.fromkeys(r["family"] for r in out):
        rows = [r for r in out if r["family"] == family]
        adjusted = metrics.adjust_p([r["result"]["p_value"] for r in rows])
        tests_ni = family.startswith(("primary", "non-inferiority"))
        ni = [metrics.noninferiority(r["result"], r["a"], r["b"], margin=MARGIN) for r in rows]
        ni_adjusted = metrics.adjust_p([x["p_noninferior"] for x in ni])
        print(f"\n### {family} ({len(rows)} comparisons, Holm)\n")
        print("| a | b | old (images only) | two-level delta [95% CI] | df | p | p Holm | Welch p | verdict |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r, p, x, p_ni in zip(rows, adjusted, ni, ni_adjusted):
            res = r["result"]
            lo, hi = res["ci"]
            text = metrics.verdict(res, r["a"], r["b"], p_adjusted=p)
            if tests_ni:
                need = metrics.seeds_needed(res, effect=MARGIN)
                text += f"; {x['text']}, one-sided p {x['p_noninferior']:.3g}, Holm {p_ni:.3g}; {need['text']}"
            print(f"| {r['a']} | {r['b']} | {r['old']} | {res['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {res['df']:.1f} "
                  f"| {res['p_value']:.3g} | {p:.3g} | {r['welch']:.3g} | {text} |")


if __name__ == "__main__":
    main()
