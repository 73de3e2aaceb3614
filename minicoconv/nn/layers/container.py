"""Containers: Sequential and ModuleList."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..module import Module


class Sequential(Module):
    """Applies its modules in order: Sequential(a, b)(x) == b(a(x))."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            _check_module("Sequential", i, m)
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of modules whose parameters the parent sees."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m: Module) -> ModuleList:
        _check_module("ModuleList", len(self._modules), m)
        setattr(self, str(len(self._modules)), m)
        return self

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


def _check_module(container: str, index: int, m) -> None:
    """A non-Module would be kept as a plain attribute and silently skipped: refuse it."""
    if not isinstance(m, Module):
        raise TypeError(f"{container}: entry {index} must be a Module, got {type(m).__name__}")
