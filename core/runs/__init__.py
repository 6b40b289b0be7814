"""Run folders: the one owner of their files (record), their checkpoints, the runs folder (listing,
deleting, guarding), which process trains a run, a run's data read back, one summary of a run, and runs
grouped into recipes and seeds with whether two runs scored the same images, and what a person says about a
run (its display name, notes and tags).

Parts: record, annotations, checkpoints, folder, process, datafile, summary, groups.
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "record": ('RunError', 'load_scores', 'read_config', 'read_metrics', 'read_status', 'read_test_metrics', 'request_stop'),
    "annotations": ('AnnotationError', 'Annotations'),
    "checkpoints": ('load_model',),
    "folder": ('RunInfo', 'delete_run', 'list_runs'),
    "datafile": ('config_of', 'run_data'),
    "summary": ('RunSummary', 'run_summary'),
    "groups": ('SeedGroup', 'group_difference', 'images_problem', 'recipe_key', 'repeat_notes', 'same_images',
               'seed_groups'),
})
