"""Names of a package imported on first use (PEP 562), so that importing the package stays cheap:
the ROS messages without torch, the label policy without torch, the CLI's parser without the trainer."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` giving `exports[name]`'s attribute `name`; a module named without a
    dot is a submodule of `package`."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            module = exports[name]
            return getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
