"""Predicting on a user's own images: an image file or upload read as a run's input with the importer's
preprocessing (clear reasons for bad files), scored by the run's best model with its saved thresholds.

Parts: images (read an image file or upload, with notes and reasons), scoring (a run's model and
thresholds, probabilities, decisions, margins, which findings to trust), `python -m core.predict` (__main__).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "images": ('InputImage', 'MAX_BYTES', 'accepted_suffixes', 'dicom_supported', 'image_files', 'read_image',
               'read_or_reason'),
    "scoring": ('RunModel', 'findings', 'load_run', 'predictions_table', 'score', 'thresholds_source',
                'trust_warnings'),
})
