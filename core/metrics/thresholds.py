"""Per-class decision thresholds chosen on validation scores, and their JSON files.

All thresholds are meant for predictions ``scores >= threshold`` (the
convention of ``core.metrics.threshold_metrics``). A data-driven threshold is
always one of the class's own validation scores: the lowest score still
predicted positive. Any value between that score and the next lower one gives
the same validation predictions; taking the score itself keeps the choice
exact and reproducible.

A class with no positives or no negatives in the split has no ROC/PR curve
to optimise; it gets ``FALLBACK_THRESHOLD`` and is reported by
``fallback_classes`` / ``ThresholdChoice.fallback`` instead of raising or
producing NaN.

Label/score conventions are those of ``core.metrics``: ``labels`` (N, C) 0/1,
``scores`` (N, C) probabilities.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError
from core.files import atomic_write
from core.metrics.arrays import check_inputs

__all__ = [
    "FALLBACK_THRESHOLD",
    "METHODS",
    "ThresholdChoice",
    "ThresholdFileError",
    "choose",
    "f1_optimal",
    "fallback_classes",
    "fixed",
    "load_choice",
    "load_thresholds",
    "save_thresholds",
    "sensitivity_at_least",
    "youden",
]

FALLBACK_THRESHOLD = 0.5


def fallback_classes(labels: np.ndarray) -> list[int]:
    """Indices of the classes that have no positives or no negatives in ``labels`` (N, C).

    These are the classes for which the data-driven methods return
    ``FALLBACK_THRESHOLD``.
    """
    labels = np.asarray(labels).astype(bool)
    n_pos = labels.sum(axis=0)
    return np.flatnonzero((n_pos == 0) | (n_pos == labels.shape[0])).tolist()


def _operating_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds of one class and the confusion counts at each.

    Args:
        y: (N,) bool labels.
        s: (N,) scores.

    Returns:
        (thresholds, tp, fp), each (K,): the K distinct scores in decreasing
        order, and the true/false positives of ``s >= threshold``.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each run of tied scores: predictions at that score include the whole run.
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[ends]
    fp = ends + 1 - tp
    return s_sorted[ends], tp, fp


def _per_class(
    labels: np.ndarray, scores: np.ndarray, pick: Callable[[np.ndarray, np.ndarray, int, int], int]
) -> np.ndarray:
    """Apply ``pick(tp, fp, n_pos, n_neg) -> index`` to each class's operating points.

    Returns (C,) thresholds in [0, 1], ``FALLBACK_THRESHOLD`` for classes without
    both label values.
    """
    labels, scores = check_inputs(labels, scores)
    out = np.full(labels.shape[1], FALLBACK_THRESHOLD)
    skip = set(fallback_classes(labels))
    for c in range(labels.shape[1]):
        if c in skip:
            continue
        thr, tp, fp = _operating_points(labels[:, c], scores[:, c])
        n_pos = int(labels[:, c].sum())
        out[c] = thr[pick(tp, fp, n_pos, labels.shape[0] - n_pos)]
    # Scores are probabilities, but clipping guarantees a valid threshold file
    # even if logits slip through.
    return np.clip(out, 0.0, 1.0)


def youden(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class threshold maximising Youden's J = sensitivity + specificity - 1 = TPR - FPR.

    Ties go to the highest threshold (fewest positive predictions). Only
    actual scores are candidates, so sklearn's ``inf`` "predict nothing"
    threshold never appears.

    Args:
        labels: (N, C) 0/1 validation labels.
        scores: (N, C) validation scores.

    Returns:
        (C,) thresholds in [0, 1].
    """
    return _per_class(labels, scores, lambda tp, fp, p, n: int(np.argmax(tp / p - fp / n)))


def f1_optimal(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class threshold maximising F1 = 2 TP / (2 TP + FP + FN); ties go to the highest threshold.

    Args:
        labels: (N, C) 0/1 validation labels.
        scores: (N, C) validation scores.

    Returns:
        (C,) thresholds in [0, 1].
    """
    # FN = P - TP, so 2TP + FP + FN = TP + FP + P, never 0 when the class has positives.
    return _per_class(labels, scores, lambda tp, fp, p, n: int(np.argmax(2 * tp / (tp + fp + p))))


def sensitivity_at_least(labels: np.ndarray, scores: np.ndarray, target: float) -> np.ndarray:
    """Per-class highest threshold whose sensitivity (recall of ``scores >= t``) is >= target.

    Sensitivity only grows as the threshold falls, so the highest qualifying
    threshold is the one with the best specificity under the constraint. The
    lowest score always qualifies (sensitivity 1), so a threshold always exists.

    Args:
        labels: (N, C) 0/1 validation labels.
        scores: (N, C) validation scores.
        target: required sensitivity in [0, 1], e.g. 0.8.

    Returns:
        (C,) thresholds in [0, 1].
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target sensitivity must be in [0, 1], got {target}")
    # tp / p is compared directly (not tp >= target * p) so a target like 0.7
    # matches 7/10 exactly: both are the double nearest the same real number.
    return _per_class(labels, scores, lambda tp, fp, p, n: int(np.argmax(tp / p >= target)))


def fixed(labels: np.ndarray, scores: np.ndarray, value: float = 0.5) -> np.ndarray:
    """The same threshold ``value`` for every class (e.g. 0.5, or the study's global 0.3).

    ``scores`` only provides the number of classes; no class falls back.

    Returns:
        (C,) thresholds.
    """
    labels, scores = check_inputs(labels, scores)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"fixed threshold must be in [0, 1], got {value}")
    return np.full(scores.shape[1], float(value))


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "youden": youden,
    "f1": f1_optimal,
    "sensitivity": sensitivity_at_least,
    "fixed": fixed,
}


@dataclass(frozen=True)
class ThresholdChoice:
    """Thresholds picked by one method on one split.

    Attributes:
        thresholds: (C,) per-class thresholds in [0, 1].
        method: readable description, e.g. "youden", "f1", "sensitivity>=0.80", "fixed-0.5".
        fallback: indices of classes that got ``FALLBACK_THRESHOLD`` because the
            split had no positives or no negatives for them.
    """

    thresholds: np.ndarray
    method: str
    fallback: list[int] = field(default_factory=list)


def choose(method: str, labels: np.ndarray, scores: np.ndarray, **kw: Any) -> ThresholdChoice:
    """Choose per-class thresholds with a method from ``METHODS``.

    Args:
        method: "youden", "f1", "sensitivity" (requires ``target=``) or
            "fixed" (``value=``, default 0.5).
        labels: (N, C) 0/1 validation labels.
        scores: (N, C) validation scores.
        **kw: the method's extra argument.

    Returns:
        ThresholdChoice with a descriptive ``method`` string and the fallback classes.
    """
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {sorted(METHODS)}")
    if method == "sensitivity" and "target" not in kw:
        raise ValueError('method "sensitivity" needs target=, e.g. target=0.8')
    thresholds = METHODS[method](labels, scores, **kw)
    if method == "fixed":
        return ThresholdChoice(thresholds, f"fixed-{kw.get('value', 0.5):g}", [])
    name = f"sensitivity>={kw['target']:.2f}" if method == "sensitivity" else method
    return ThresholdChoice(thresholds, name, fallback_classes(labels))


class ThresholdFileError(UserError):
    """A thresholds JSON file is missing, unreadable or does not match the model's classes."""


def save_thresholds(
    path: str | os.PathLike[str],
    choice_or_thresholds: ThresholdChoice | np.ndarray | Sequence[float],
    class_names: Sequence[str],
    method: str | None = None,
    split: str = "val",
) -> None:
    """Write per-class thresholds as JSON, atomically.

    Format::

        {"split": "val", "method": m,
         "classes": {name: {"threshold": t, "method": m_or_"fallback-0.5"}},
         "fallback_classes": [names]}

    Written with core.files.atomic_write, so a reader never sees a half-written file.

    Args:
        path: destination file.
        choice_or_thresholds: a ThresholdChoice, or (C,) thresholds.
        class_names: C names in column order.
        method: overrides the choice's method name; defaults to
            ``choice.method``, or "custom" for a bare array.
        split: the split the thresholds were chosen on.
    """
    if isinstance(choice_or_thresholds, ThresholdChoice):
        thresholds = np.asarray(choice_or_thresholds.thresholds, dtype=np.float64)
        method = method or choice_or_thresholds.method
        fallback = set(choice_or_thresholds.fallback)
    else:
        thresholds = np.asarray(choice_or_thresholds, dtype=np.float64)
        method = method or "custom"
        fallback = set()
    if thresholds.shape != (len(class_names),):
        raise ValueError(f"got {thresholds.shape} thresholds for {len(class_names)} class names")
    if not (np.isfinite(thresholds).all() and ((thresholds >= 0) & (thresholds <= 1)).all()):
        raise ValueError(f"thresholds must be finite and in [0, 1], got {thresholds.tolist()}")

    payload = {
        "split": split,
        "method": method,
        "classes": {
            name: {
                "threshold": float(t),
                "method": f"fallback-{FALLBACK_THRESHOLD:g}" if c in fallback else method,
            }
            for c, (name, t) in enumerate(zip(class_names, thresholds))
        },
        "fallback_classes": [class_names[c] for c in sorted(fallback)],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(payload, indent=2, allow_nan=False).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def _fail(path: Path, problem: str) -> ThresholdFileError:
    return ThresholdFileError(
        f"Threshold file {path} {problem}. Fix the file by hand (it must map every class name "
        f'to a number in [0, 1], either as {{"classes": {{name: {{"threshold": t}}}}}} or as '
        f"{{name: t}}) or regenerate it by choosing thresholds on the validation split again."
    )


def load_thresholds(path: str | os.PathLike[str], class_names: Sequence[str]) -> np.ndarray:
    """(C,) thresholds in ``class_names`` order from a file ``load_choice`` reads (same errors)."""
    return load_choice(path, class_names).thresholds


def load_choice(path: str | os.PathLike[str], class_names: Sequence[str]) -> ThresholdChoice:
    """Read thresholds written by ``save_thresholds`` or a hand-edited ``{name: float}`` file.

    Args:
        path: JSON file.
        class_names: the C class names the model predicts, in column order.

    Returns:
        ThresholdChoice: (C,) thresholds in ``class_names`` order, the method the file records
        ("file" for a hand-edited one) and its fallback classes as indices.

    Raises:
        ThresholdFileError: the file is missing or not JSON, its class names
            differ from ``class_names`` (unknown and missing names are listed),
            or a value is not a number in [0, 1].
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, "does not exist") from None
    except OSError as e:
        raise _fail(path, f"cannot be read ({e.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, Mapping):
        raise _fail(path, f"holds a JSON {type(data).__name__}, not an object")
    entries = data["classes"] if isinstance(data.get("classes"), Mapping) else data

    expected = list(class_names)
    unknown = [name for name in entries if name not in expected]
    missing = [name for name in expected if name not in entries]
    problems = []
    if unknown:
        problems.append(f"names classes the model does not have: {', '.join(map(repr, unknown))}")
    if missing:
        problems.append(f"lacks thresholds for: {', '.join(map(repr, missing))}")

    values = []
    for name in expected:
        if name not in entries:
            continue
        raw = entries[name]
        value = raw.get("threshold") if isinstance(raw, Mapping) else raw
        # bool is an int subclass in Python, but true/false is never a threshold.
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and 0.0 <= value <= 1.0):
            problems.append(f"has {value!r} for {name!r}, which is not a number in [0, 1]")
        values.append(value)
    if problems:
        raise _fail(path, "; ".join(problems))
    saved = entries is not data  # save_thresholds' layout, with method and fallback classes
    fallback = [expected.index(n) for n in data.get("fallback_classes", []) if n in expected] if saved else []
    return ThresholdChoice(np.asarray(values, dtype=np.float64), str(data.get("method", "file")) if saved else "file",
                           fallback)
