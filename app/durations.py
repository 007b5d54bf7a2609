"""Human durations such as ``30d``, ``4h``, ``90m`` or ``1h30m``, and the times people give
(filters, periods), used by the CLI, the API and the pages."""

import re
from datetime import UTC, datetime, timedelta

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d{1,18})([smhdw])")
LONGEST = timedelta(days=100 * 365)  # any duration past this is a typo, not a plan


def parse_duration(text: str) -> timedelta:
    """Return the timedelta that ``text`` names, or raise ValueError saying what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f'{text!r} is not a duration; write it as text, for example "4h"')
    cleaned = text.strip().lower()
    if not cleaned or _PART.sub("", cleaned) != "":
        raise ValueError(
            f"{text!r} is not a duration; use a number with a unit s, m, h, d or w, "
            "for example 30d, 4h or 1h30m"
        )
    seconds = sum(int(amount) * _SECONDS[unit] for amount, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"{text!r} is longer than {LONGEST.days // 365} years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest form ``parse_duration`` reads back: 1h30m, 45s, 2d."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (``2026-11-01``, ``2026-11-01T14:30``, with ``Z`` or an offset;
    no zone means UTC) as naive UTC, the form stored; None for empty. ValueError says
    what is wrong."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time like 2026-11-01, 2026-11-01T14:30 or 2026-11-01T14:30:00Z"
        ) from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
