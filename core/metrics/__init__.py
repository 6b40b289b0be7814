"""Multi-label metrics under medmnist's names (AUC, ACC) and every other number named for what it is:
per-class and thresholded metrics, bootstrap intervals, paired comparisons of runs and seed groups, what
they let one claim (adjusted p, non-inferiority, seeds needed),
calibration, and per-class thresholds chosen on validation. docs/metrics.md defines each.

Parts: classification, bootstrap, paired, decisions (families, non-inferiority, seeds needed), sequential (group-sequential boundaries for deciding as seeds arrive), reliability (calibration), thresholds, arrays (shared input checks).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "classification": ('OPERATING_LEVELS', 'auc_per_class', 'mean_auc', 'medmnist_acc', 'threshold_metrics', 'sensitivity_at_specificity', 'specificity_at_sensitivity', 'summarize'),
    "bootstrap": ('ResampledAuc', 'bootstrap_auc_ci', 'mean_auc_ci', 'medmnist_acc_ci', 'per_class_ci', 'resampled_aucs'),
    "paired": ('MIN_POSITIVES', 'PairingError', 'check_same_images', 'eligible_classes', 'paired_auc_difference', 'seed_group_difference', 't_interval', 'verdict', 'winner'),
    "decisions": ('CORRECTIONS', 'adjust_p', 'holm', 'noninferiority', 'noninferiority_text', 'seeds_needed'),
    "reliability": ('brier_score', 'calibration', 'expected_calibration_error', 'reliability_bins'),
    "sequential": ('boundaries', 'fractions', 'nominal_levels', 'one_sided_p', 'sequential_holm', 'spent'),
    "arrays": ('check_inputs',),
})
