"""The model registry and its architectures: a model is found by name (timm's registry, apart from the
networks), built, costed and described.

Parts: registry (names, build, parameters, FLOPs; no torch until a model is built), nets (the CNNs).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "registry": ('BUILDABLE', 'DEFAULT_MODEL', 'MODELS', 'VARIANTS', 'build_model', 'count_params', 'describe', 'flops_per_image', 'fold_batchnorm'),
})
