"""Which pixels raised a score: saliency maps from captum (Grad-CAM, Integrated Gradients, Occlusion,
Guided Grad-CAM) and the checks that a map explains the model (randomisation, deletion/insertion).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "saliency": ('METHODS', 'SaliencyError', 'attribute', 'grad_cam', 'grad_cam_all_classes', 'overlay'),
    "sanity": ('Faithfulness', 'Randomisation', 'faithfulness', 'randomisation'),
})
