"""Training one run: the recipe, the device and precision, the one training step, the loop, cost
estimates and background launching; `python -m core.train` (__main__).

Parts: recipe (TrainConfig), device, autotune (precision and layout by measurement), step, loop
(prepare_run, train), cost (estimates), background (launching).
"""
from core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "recipe": ('ConfigError', 'TrainConfig'),
    "loop": ('prepare_run', 'train'),
    "cost": ('Estimate', 'estimate', 'format_seconds'),
    "background": ('launch',),
})
