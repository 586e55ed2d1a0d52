"""What a theorem function returns when one number is not enough: a bound with its rate and provenance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """A predicted quantity together with the facts needed to compare it with a measurement.

    ``value``: the bound (or exact value) itself; ``rate``: the per-step factor it decays or grows by
    (``None`` if the bound is not geometric); ``exact``: ``True`` when every constant in the formula is exact
    (a [derived] statement of THEORY.md, or a paper constant read in the paper), ``False`` when the formula is
    only trustworthy up to its shape (constants [uncertain] or [secondary]); ``source``: paper + theorem, or
    THEORY.md section.
    """

    value: float
    rate: float | None
    exact: bool
    source: str

    def __float__(self) -> float:
        return float(self.value)
