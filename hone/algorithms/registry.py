"""A small name -> function registry, one per kind of algorithm variant.

Variants (advantage estimators, policy losses, KL estimators, loss aggregations) are plain
functions registered under a name, so a config picks one with a string and the trainer calls it
without an ``if loss_type == ...`` ladder.

>>> SQUARES = Registry("square function")
>>> @SQUARES.register("int")
... def square(x: int) -> int:
...     return x * x
>>> SQUARES.get("int")(3)
9
>>> "int" in SQUARES, "float" in SQUARES
(True, False)
>>> SQUARES.get("float")
Traceback (most recent call last):
...
ValueError: unknown square function 'float'; expected one of: int
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Functions of one kind, looked up by name.

    ``kind`` is a human-readable noun ("policy loss") used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._fns: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that registers a function under ``name`` and returns it unchanged."""

        def decorate(fn: F) -> F:
            if name in self._fns:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._fns[name] = fn
            return fn

        return decorate

    def get(self, name: str) -> F:
        """The function registered as ``name``; a one-line ValueError listing the names if none."""
        try:
            return self._fns[name]
        except KeyError:
            expected = ", ".join(self.names())
            raise ValueError(
                f"unknown {self.kind} {name!r}; expected one of: {expected}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._fns)

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
