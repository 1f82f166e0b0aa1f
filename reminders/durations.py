"""Parsing of a reminder's `dueTime`, `period` and `ttl` (DESIGN.md 3.5).

Pure: the caller passes the current time as integer Unix milliseconds (`now_ms`).

Accepted forms:

- `dueTime`, `ttl`: an RFC 3339 timestamp (`2024-05-01T12:00:00.250+02:00`, `...Z`), a Go
  duration (`1h30m`, `500ms`, `1.5h`, `300us`) or an ISO 8601 duration (`PT10S`,
  `P1DT2H`, `P2W`). Durations count from `now_ms`. An empty `dueTime` means due now;
  an empty `ttl` means no expiry. A timestamp in the past is kept as is (it is due at
  once; a period stays anchored on it).
- `period`: a Go or ISO 8601 duration, or an ISO 8601 repetition `Rn/<ISO duration>`
  (`R5/PT10S` = at most 5 firings, `R/PT10S` = unlimited, `R0/...` rejected). Empty
  means a one-shot reminder. A zero period is rejected: it would fire in a tight loop.

Decisions:

- ISO 8601 years and months are rejected unless zero (`P0Y0M1D` is fine). They have no
  fixed length, and a schedule here is a fixed interval in milliseconds, so they could
  only be approximated, and a "monthly" reminder that drifts by days is worse than a
  clear error. Days are exactly 24 h and weeks 7 days (UTC has no DST).
- Only the last ISO component may carry a fraction (`PT1.5S`, `PT0,5H`), as ISO 8601 says.
- Values are computed exactly, then rounded *up* to the millisecond, so that a due time
  is never earlier than asked (`300us` is 1 ms, `1.0001s` is 1001 ms).
- Negative durations are rejected, `-0s` included; Go's `+` sign is accepted.
- Durations and timestamps may reach at most `MAX_DURATION_MS` (100 years) ahead, text is
  at most `MAX_TEXT_LENGTH` characters and a repetition count at most `MAX_REPETITIONS`.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from reminders.errors import InvalidReminderError

__all__ = [
    "MAX_DURATION_MS",
    "MAX_REPETITIONS",
    "MAX_TEXT_LENGTH",
    "Period",
    "parse_due_time",
    "parse_duration",
    "parse_period",
    "parse_rfc3339",
    "parse_ttl",
]

_MS_PER_MINUTE = 60_000
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000

MAX_DURATION_MS = 36_525 * _MS_PER_DAY  # 100 Julian years
MAX_TEXT_LENGTH = 128
MAX_REPETITIONS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Period:
    """A parsed `period`: fire every `interval_ms`, at most `repetitions` times (None: no cap)."""

    interval_ms: int
    repetitions: int | None = None


# --- Go durations (time.ParseDuration's grammar) -------------------------------------

_GO_UNIT_MS: dict[str, Fraction] = {
    "ns": Fraction(1, 1_000_000),
    "us": Fraction(1, 1000),
    "\u00b5s": Fraction(1, 1000),  # micro sign, as Go accepts
    "\u03bcs": Fraction(1, 1000),  # Greek mu, as Go accepts
    "ms": Fraction(1),
    "s": Fraction(1000),
    "m": Fraction(_MS_PER_MINUTE),
    "h": Fraction(_MS_PER_HOUR),
}
# [0-9], not \d: \d also matches other scripts' digits, which Go rejects.
_GO_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# "ms"/"ns"/"us" come before "m"/"s" so that alternation picks the longer unit.
_GO_UNIT = "(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_GO_COMPONENT = re.compile(f"({_GO_NUMBER})({_GO_UNIT})")
_GO_DURATION = re.compile(f"(?:{_GO_NUMBER}{_GO_UNIT})+")

# --- ISO 8601 durations ---------------------------------------------------------------

_ISO_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"
_ISO_DURATION = re.compile(
    f"P(?:(?P<years>{_ISO_NUMBER})Y)?(?:(?P<months>{_ISO_NUMBER})M)?"
    f"(?:(?P<weeks>{_ISO_NUMBER})W)?(?:(?P<days>{_ISO_NUMBER})D)?"
    f"(?P<time>T(?:(?P<hours>{_ISO_NUMBER})H)?(?:(?P<minutes>{_ISO_NUMBER})M)?"
    f"(?:(?P<seconds>{_ISO_NUMBER})S)?)?"
)
_ISO_UNIT_MS: dict[str, int] = {
    "years": 0,  # never used: nonzero years are rejected
    "months": 0,  # never used: nonzero months are rejected
    "weeks": 7 * _MS_PER_DAY,
    "days": _MS_PER_DAY,
    "hours": _MS_PER_HOUR,
    "minutes": _MS_PER_MINUTE,
    "seconds": 1000,
}
_ISO_REPETITION = re.compile(r"R(?P<count>[0-9]*)/(?P<duration>.*)", re.DOTALL)

# --- RFC 3339 timestamps --------------------------------------------------------------

_RFC3339 = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<frac>[0-9]+))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_LOOKS_LIKE_TIMESTAMP = re.compile(r"[0-9]{4}-")
_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)

_POINT_FORMATS = (
    "expected a Go duration (like 1h30m or 500ms), an ISO 8601 duration (like PT10S) "
    "or an RFC 3339 timestamp (like 2024-05-01T12:00:00Z)"
)
_PERIOD_FORMATS = (
    "expected a Go duration (like 1h30m or 500ms), an ISO 8601 duration (like PT10S) "
    "or an ISO 8601 repetition (like R5/PT10S)"
)
_DURATION_FORMATS = (
    "expected a Go duration (like 1h30m or 500ms) or an ISO 8601 duration (like PT10S)"
)


def parse_due_time(text: str, now_ms: int) -> int:
    """Absolute due time in Unix ms of a `dueTime`; empty means `now_ms`."""
    if text == "":
        return now_ms
    return _parse_point(text, now_ms, "due_time")


def parse_ttl(text: str, now_ms: int) -> int | None:
    """Absolute expiry in Unix ms of a `ttl` (durations count from `now_ms`); empty: None."""
    if text == "":
        return None
    return _parse_point(text, now_ms, "ttl")


def parse_period(text: str) -> Period | None:
    """The `period` as an interval and an optional repetition cap; empty (one-shot): None."""
    field = "period"
    if text == "":
        return None
    _check_length(text, field)
    repetitions: int | None = None
    duration_text = text
    if text.startswith("R"):
        repetitions, duration_text = _split_repetition(text, field)
    interval_ms = _duration_ms(duration_text, field, text, _PERIOD_FORMATS)
    if interval_ms == 0:
        raise _invalid(field, text, "the period must be longer than zero")
    return Period(interval_ms=interval_ms, repetitions=repetitions)


def parse_duration(text: str, field: str) -> int:
    """A non-negative Go or ISO 8601 duration in ms (rounded up); errors name `field`."""
    _check_length(text, field)
    return _duration_ms(text, field, text, _DURATION_FORMATS)


def parse_rfc3339(text: str, field: str) -> int:
    """An RFC 3339 timestamp as Unix ms, fractions rounded up; errors name `field`."""
    _check_length(text, field)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _invalid(field, text, "expected an RFC 3339 timestamp like 2024-05-01T12:00:00Z")
    second = int(match["second"])
    # RFC 3339 allows a leap second; Unix time has none, so :60 is read as the next second.
    leap_ms = 1000 if second == 60 else 0
    try:
        naive = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            59 if leap_ms else second,
        )
    except ValueError as exc:
        raise _invalid(field, text, f"not a valid date and time ({exc})") from None
    frac = match["frac"]
    frac_ms = math.ceil(Fraction(int(frac), 10 ** len(frac)) * 1000) if frac else 0
    local_ms = (naive - _EPOCH) // _ONE_MS + leap_ms + frac_ms
    return local_ms - _offset_ms(match["offset"], field, text)


def _parse_point(text: str, now_ms: int, field: str) -> int:
    _check_length(text, field)
    if _LOOKS_LIKE_TIMESTAMP.match(text):
        at_ms = parse_rfc3339(text, field)
        if at_ms - now_ms > MAX_DURATION_MS:
            raise _invalid(field, text, "more than 100 years ahead")
        return at_ms
    if text.startswith("R"):
        raise _invalid(field, text, "repetitions (Rn/...) are only allowed in a period")
    return now_ms + _duration_ms(text, field, text, _POINT_FORMATS)


@functools.lru_cache(maxsize=1024)
def _duration_ms(text: str, field: str, shown: str, formats: str) -> int:
    """`text` as ms rounded up; error messages show `shown`, the whole field value.

    Cached: a service sees the same few durations ("24h", "PT10S") again and again, and
    exact parsing (Fractions) costs tens of microseconds. Errors are raised, not cached."""
    if text.startswith("-"):
        raise _invalid(field, shown, "negative durations are not allowed")
    exact = _iso_exact(text, field, shown) if text.startswith("P") else _go_exact(text)
    if exact is None:
        raise _invalid(field, shown, formats)
    if exact > MAX_DURATION_MS:
        raise _invalid(field, shown, "longer than the maximum of 100 years")
    return math.ceil(exact)


def _go_exact(text: str) -> Fraction | None:
    """A non-negative Go duration in exact ms, or None if `text` is not one."""
    body = text.removeprefix("+")
    if body == "0":  # the only unitless value Go accepts
        return Fraction(0)
    if _GO_DURATION.fullmatch(body) is None:
        return None
    return sum(
        (Fraction(number) * _GO_UNIT_MS[unit] for number, unit in _GO_COMPONENT.findall(body)),
        start=Fraction(0),
    )


def _iso_exact(text: str, field: str, shown: str) -> Fraction | None:
    """An ISO 8601 duration in exact ms, or None if `text` is not one."""
    match = _ISO_DURATION.fullmatch(text)
    if match is None:
        return None
    present = [(unit, match[unit]) for unit in _ISO_UNIT_MS if match[unit] is not None]
    if not present:
        return None  # "P" alone
    if match["time"] == "T":
        return None  # "T" with no time components after it
    if any(_has_fraction(value) for _, value in present[:-1]):
        raise _invalid(field, shown, "only the last ISO 8601 component may have a fraction")
    values = {unit: Fraction(value.replace(",", ".")) for unit, value in present}
    if values.get("years", 0) or values.get("months", 0):
        raise _invalid(
            field,
            shown,
            "years and months have no fixed length and are not supported; "
            "use weeks (W) or days (D)",
        )
    return sum((value * _ISO_UNIT_MS[unit] for unit, value in values.items()), Fraction(0))


def _split_repetition(text: str, field: str) -> tuple[int | None, str]:
    match = _ISO_REPETITION.fullmatch(text)
    if match is None or not match["duration"].startswith("P"):
        raise _invalid(field, text, "expected an ISO 8601 repetition like R5/PT10S or R/PT10S")
    count_text = match["count"]
    if count_text == "":
        return None, match["duration"]
    count = int(count_text)
    if count == 0:
        raise _invalid(field, text, "R0 would never fire; the repetition count must be >= 1")
    if count > MAX_REPETITIONS:
        raise _invalid(
            field, text, f"at most {MAX_REPETITIONS} repetitions; use R/... for unlimited"
        )
    return count, match["duration"]


def _offset_ms(offset: str, field: str, text: str) -> int:
    if offset in ("Z", "z"):
        return 0
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or minutes > 59:
        raise _invalid(field, text, f"invalid UTC offset {offset}")
    sign = -1 if offset[0] == "-" else 1
    return sign * (hours * _MS_PER_HOUR + minutes * _MS_PER_MINUTE)


def _has_fraction(value: str) -> bool:
    return "." in value or "," in value


def _check_length(text: str, field: str) -> None:
    if len(text) > MAX_TEXT_LENGTH:
        raise _invalid(field, text, f"longer than {MAX_TEXT_LENGTH} characters")


def _invalid(field: str, text: str, reason: str) -> InvalidReminderError:
    shown = text if len(text) <= 40 else text[:40] + "..."
    return InvalidReminderError(field, f"invalid {field} {shown!r}: {reason}")
