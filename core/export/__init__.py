"""Taking a run's model home: ONNX export (dynamic batch, input spec and normalisation in its metadata),
the thresholds in effect, and a model card drawn only from the run folder.

Parts: onnx_model (export, onnxruntime session and scoring, latency), card (the model card as JSON and
Markdown), folder (the export folder of one run), `python -m core.export` (__main__).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "onnx_model": ('INPUT', 'NORMALISATION', 'OUTPUT', 'export_onnx', 'input_spec', 'metadata', 'ms_per_image',
                   'onnx_predict', 'session'),
    "card": ('build_card', 'card_markdown'),
    "folder": ('CARD_JSON', 'CARD_MD', 'MODEL_FILE', 'export_run', 'export_zip', 'thresholds_file'),
})
