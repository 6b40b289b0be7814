"""A package's public names, each imported from its submodule on first use (PEP 562).

A package `__init__` lists where its names live; importing the package (or one submodule of it) then
loads nothing else, so the app's first page stays clear of torch and scikit-learn.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, parts: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """(__getattr__, __dir__, __all__) for `package`, whose submodule `part` defines each name in parts[part].

    >>> __getattr__, __dir__, __all__ = lazy_exports(__name__, {"record": ("RunError", "read_config")})
    """
    home = {name: part for part, names in parts.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{home[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(home)

    return __getattr__, __dir__, sorted(home)
