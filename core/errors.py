"""The one base class for errors a user can fix: a bad setting, a missing, moved or damaged file, a run
in the wrong state, a full disk. Its message says what is wrong and what to do, so a command line
prints it and exits with status 2, and a page shows it, instead of a traceback.

Each job keeps its own subclass (ConfigError, DataError, RunError, ...), so a caller can still catch
one kind; a caller that only reports catches `UserError`.
"""
from __future__ import annotations


class UserError(ValueError):
    """Something the user can fix; the message names it and says what to do."""
