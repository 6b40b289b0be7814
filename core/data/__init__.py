"""ChestMNIST data: where the files live, what a valid file holds, downloading, loading and batching
them, and turning a folder of images + a label CSV into one.

Parts: chestmnist (find, download, validate, load), npz (safe npz reading), batching (training
batches as tensors), provenance (official ChestMNIST or not), importer with table and pixels (the
folder import), `python -m core.data` (__main__).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "chestmnist": ('CLASS_NAMES', 'DATA_ROOT_HELP', 'DEFAULT_ROOT', 'DEMO_ROOT', 'N_CLASSES', 'OFFICIAL_COUNTS', 'SIZES', 'SPLITS', 'ChestData', 'DataError', 'Split', 'available_sizes', 'check_size', 'default_root', 'download', 'is_demo', 'load', 'npz_name', 'npz_path', 'prevalence', 'resolve_root', 'split_counts', 'subset_indices', 'write_npz'),
    "provenance": ('data_provenance', 'is_official', 'run_data_label'),
    "importer": ('DataImportError', 'ImportReport', 'import_folder'),
})
