"""Scoring a run: val and test scored with its best model, thresholds chosen on validation and reported
on test, medmnist's CSV; `python -m core.evaluate` (__main__).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ensemble": ("compare_ensembles", "ensemble_cost", "ensemble_scores", "multiscale_study"),
    "effective": ("GRID", "degrade", "effective_curve", "effective_scores", "information_or_training", "finding_rows"),
    "scoring": ('evaluate_other', 'evaluate_run', 'export_evaluator_csv', 'measure_inference', 'predict'),
})
