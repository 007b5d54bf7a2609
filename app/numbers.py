"""Numbers people give (prices, budgets, template settings), checked to be plain, finite
and within what Berth can store and compute with."""

from __future__ import annotations

import math

# Well past any real price, budget, CPU count or memory size, well inside a float.
LARGEST = 1e12


def bounded(value, what: str, low: float = 0, high: float = LARGEST, integer: bool = False):
    """``value`` as a float (an int with ``integer``), or ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    if value < low and low == 0:
        raise ValueError(f"{what} must be a non-negative number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be from {low:g} to {high:g}, not {value!r}"[:200])
    if integer:
        if int(value) != value:
            raise ValueError(f"{what} must be a whole number, not {value!r}")
        return int(value)
    return float(value)
