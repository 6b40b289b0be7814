"""`python -m core.study ...` (and the runner's `_train-one` child)."""
import sys

from core.study.cli import main

sys.exit(main())
