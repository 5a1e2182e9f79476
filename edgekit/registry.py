"""Named registries with lazy loading.

An entry is a ``"module:attribute"`` string, so listing names (for ``--help`` or error
messages) imports nothing. Third-party packages add entries through the entry-point
group of the same name (``edgekit.backends``, ``edgekit.exporters``, ...).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError, allowed

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.group = entry_point_group
        self._targets: dict[str, str | Any] = {}
        self._loaded: dict[str, T] = {}
        self._eps_done = entry_point_group is None

    def register(self, name: str, target: str | Any | None = None) -> Callable | None:
        """``register("x", "pkg.mod:Cls")`` or as a decorator ``@reg.register("x")``."""
        if target is not None:
            self._targets[name] = target
            self._loaded.pop(name, None)
            return None

        def deco(obj):
            self._targets[name] = obj
            self._loaded.pop(name, None)
            return obj

        return deco

    def _load_entry_points(self) -> None:
        if self._eps_done:
            return
        self._eps_done = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            self._targets.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._targets)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._targets:
            raise ConfigError(allowed(name, self.names(), self.kind))
        target = self._targets[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            obj = importlib.import_module(module)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        else:
            obj = target
        self._loaded[name] = obj
        return obj

    def target(self, name: str) -> str | Any:
        self._load_entry_points()
        return self._targets[name]

    def parse_list(self, spec: str | list[str] | tuple[str, ...]) -> list[str]:
        """Split ``"a,b"`` and check every name; report all unknown names at once."""
        items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
        items = [s for s in items if s]
        bad = [s for s in items if s not in self]
        if bad:
            raise ConfigError(allowed(bad[0] if len(bad) == 1 else ",".join(bad), self.names(), self.kind))
        if not items:
            raise ConfigError(f"No {self.kind} given. Available: {', '.join(self.names())}")
        return list(dict.fromkeys(items))
