"""Shared handling of model parameters given as dicts (from specs, search spaces and Params).

Every family's parameter dataclass is read the same way (:func:`parse_params`): unknown keys are refused,
the values become the dataclass, and its :meth:`~CheckedParams.rules` are checked in order, the first
broken one failing with its message. A family states only its rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any, Protocol, TypeVar

#: One rule of a parameter set: whether the values break it, and the message saying so.
Rule = tuple[bool, str]


class CheckedParams(Protocol):
    def rules(self) -> Iterator[Rule]:
        """The rules the values must keep, in the order they are checked (lazily: a rule is evaluated
        only once the ones before it held)."""
        ...


P = TypeVar("P", bound=CheckedParams)


def parse_params(
    cls: type[P], raw: dict[str, Any], family: str, convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> P:
    """``cls`` built from ``raw`` (after ``convert``, e.g. JSON lists into tuples), failing with a
    ``ValueError`` on an unknown key or on the first of its rules the values break."""
    reject_unknown(cls, raw, family)
    params = cls(**(raw if convert is None else convert(raw)))
    for broken, message in params.rules():
        if broken:
            raise ValueError(message)
    return params


def reject_unknown(cls: type, raw: dict[str, Any], family: str) -> None:
    """Fail on keys that are not fields of the parameter dataclass ``cls``, naming the known ones.

    Why: a typo in a spec or in the UI's Params must fail loudly, not be silently ignored.
    """
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown {family} parameters {sorted(unknown)}; known: {sorted(known)}")
