"""Human durations such as ``30d``, ``4h``, ``90m`` or ``1h30m``, used by the CLI and API."""

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Return the timedelta that ``text`` names, or raise ValueError saying what is wrong."""
    cleaned = text.strip().lower()
    if not cleaned or _PART.sub("", cleaned) != "":
        raise ValueError(
            f"{text!r} is not a duration; use a number with a unit s, m, h, d or w, "
            "for example 30d, 4h or 1h30m"
        )
    total = timedelta()
    for amount, unit in _PART.findall(cleaned):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta():
        raise ValueError(f"{text!r} is not a positive duration")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest form ``parse_duration`` reads back: 1h30m, 45s, 2d."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
