"""Parsing of dueTime, period and ttl: tables of valid and invalid values, and properties."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reminders.durations import (
    MAX_DURATION_MS,
    MAX_REPETITIONS,
    MAX_TEXT_LENGTH,
    Period,
    parse_due_time,
    parse_duration,
    parse_period,
    parse_rfc3339,
    parse_ttl,
)
from reminders.errors import InvalidReminderError, NotLeaderError, RemindersError

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=200)

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
H = 3_600_000
M = 60_000
S = 1000
D = 24 * H

GO_VALID = [
    ("0", 0),
    ("+0", 0),
    ("0s", 0),
    ("1h30m", H + 30 * M),
    ("500ms", 500),
    ("1.5h", H + 30 * M),
    ("2h45m10s", 2 * H + 45 * M + 10 * S),
    ("1h1h", 2 * H),  # Go sums repeated units
    ("30m1h", H + 30 * M),  # and does not require an order
    ("+5s", 5 * S),
    (".5s", 500),
    ("5.s", 5 * S),
    ("1.000s", S),
    ("300us", 1),  # rounded up: never early
    ("300\u00b5s", 1),  # micro sign
    ("300\u03bcs", 1),  # Greek mu
    ("1500us", 2),
    ("2000us", 2),
    ("999999ns", 1),
    ("1000000ns", 1),
    ("1000001ns", 2),
    ("1.0001s", 1001),
    ("1h0m0s", H),
    ("0.25m", 15 * S),
    ("100ms200us", 101),
    ("876600h", MAX_DURATION_MS),  # exactly 100 years
]

ISO_VALID = [
    ("PT10S", 10 * S),
    ("PT0S", 0),
    ("P1D", D),
    ("P1DT2H", D + 2 * H),
    ("P2W", 14 * D),
    ("P1W2D", 9 * D),  # ISO 8601-2 allows weeks with other units
    ("PT1H30M", H + 30 * M),
    ("PT90M", 90 * M),
    ("PT1.5S", 1500),
    ("PT0,5H", 30 * M),  # comma decimal sign
    ("PT0.0001S", 1),  # rounded up
    ("P1.5D", 36 * H),
    ("P0Y0M1D", D),  # zero years and months are exact
    ("P0Y", 0),
    ("P1DT1H1M1S", D + H + M + S),
    ("PT36H", 36 * H),
]

RFC3339_VALID = [
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00:00z", 0),
    ("1970-01-01t00:00:00Z", 0),
    ("2023-11-14T22:13:20Z", NOW),
    ("2023-11-14T22:13:20.5Z", NOW + 500),
    ("2023-11-14T22:13:20.123456789Z", NOW + 124),  # rounded up
    ("2023-11-14T22:13:20.000Z", NOW),
    ("2023-11-15T00:13:20+02:00", NOW),
    ("2023-11-14T17:43:20-04:30", NOW),
    ("2023-11-14T22:13:20-00:00", NOW),
    ("2023-11-15T22:12:20+23:59", NOW),
    ("2016-12-31T23:59:60Z", 1_483_228_800_000),  # leap second: the next second
    ("2024-02-29T00:00:00Z", 1_709_164_800_000),
    ("1969-12-31T23:59:59Z", -1000),
]

# Invalid for dueTime and ttl alike (and, those not timestamps, for durations too).
POINT_INVALID = [
    "1",
    "h",
    "1x",
    "1H",
    "1 h",
    " 1h",
    "1h ",
    "1h 30m",
    ".s",
    "1..5s",
    "1.5",
    "1e3s",
    "1_000s",
    "\u0663s",  # Arabic-Indic digit three: Python's isdigit() says yes, Go says no
    "-1s",
    "-0",
    "-0s",
    "--1s",
    "+",
    "-",
    "+-1s",
    "1s-1ms",
    "P",
    "PT",
    "P1DT",
    "P1H",  # hours need the T
    "PT1D",
    "P1S",
    "pt10s",
    "-PT10S",
    "+PT10S",
    "P1M",
    "P1Y",
    "P1.5Y",
    "P1Y2M3DT4H",
    "P1.5DT2H",  # only the last component may have a fraction
    "PT1.5H30M",
    "PT.5S",
    "PT1.S",
    "P1D2W",  # wrong order
    "PT10S10S",
    "R5/PT10S",  # repetitions only in a period
    "R/PT10S",
    "2024-02-30T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "2024-05-01T24:00:00Z",
    "2024-05-01T12:60:00Z",
    "2024-05-01T12:00:61Z",
    "2024-05-01T12:00:00",  # RFC 3339 requires an offset
    "2024-05-01 12:00:00Z",
    "2024-05-01T12:00:00+0200",
    "2024-05-01T12:00:00+24:00",
    "2024-05-01T12:00:00+02:60",
    "2024-05-01T12:00:00.Z",
    "2024-05-01T12:00Z",
    "2024-05-01",
    "0000-01-01T00:00:00Z",
    "24-05-01T12:00:00Z",
    "2300-01-01T00:00:00Z",  # more than 100 years ahead of NOW
    "876600h1ms",  # more than 100 years
    "P36526D",
    "9" * 60 + "h",
    "x" * (MAX_TEXT_LENGTH + 1),
    "1h\n",
    "now",
]

PERIOD_VALID = [
    ("1s", Period(S)),
    ("1h30m", Period(H + 30 * M)),
    ("300us", Period(1)),  # rounded up to 1 ms, not down to a zero period
    ("PT10S", Period(10 * S)),
    ("P1W", Period(7 * D)),
    ("R5/PT10S", Period(10 * S, 5)),
    ("R1/PT10S", Period(10 * S, 1)),
    ("R05/PT10S", Period(10 * S, 5)),
    ("R/PT10S", Period(10 * S, None)),
    ("R/P1DT12H", Period(36 * H, None)),
    (f"R{MAX_REPETITIONS}/PT1S", Period(S, MAX_REPETITIONS)),
]

PERIOD_INVALID = [
    "0",
    "0s",
    "PT0S",
    "R5/PT0S",
    "R0/PT10S",
    "R00/PT10S",
    f"R{MAX_REPETITIONS + 1}/PT1S",
    "R-1/PT10S",
    "R5",
    "R5/",
    "R/",
    "R5/10s",  # an ISO repetition needs an ISO duration
    "R5/PT10S/PT1S",
    "R5/2024-05-01T00:00:00Z/PT1H",
    "r5/PT10S",
    "R5PT10S",
    "R 5/PT10S",
    "R5/P1M",
    "-1s",
    "1",
    "2024-05-01T00:00:00Z",  # a timestamp is not a period
    "P1M",
    "P1Y",
    "garbage",
    "876601h",
]


@pytest.mark.parametrize(("text", "ms"), GO_VALID + ISO_VALID)
def test_duration_due_time_and_ttl(text: str, ms: int) -> None:
    assert parse_duration(text, "due_time") == ms
    assert parse_due_time(text, NOW) == NOW + ms
    assert parse_ttl(text, NOW) == NOW + ms


@pytest.mark.parametrize(("text", "ms"), RFC3339_VALID)
def test_rfc3339_is_absolute(text: str, ms: int) -> None:
    assert parse_rfc3339(text, "due_time") == ms
    assert parse_due_time(text, NOW) == ms
    assert parse_ttl(text, NOW) == ms
    # A timestamp does not depend on the clock (as long as it is within 100 years ahead).
    assert parse_due_time(text, 0) == ms


def test_empty_due_time_is_now_and_empty_ttl_is_none() -> None:
    assert parse_due_time("", NOW) == NOW
    assert parse_ttl("", NOW) is None
    assert parse_period("") is None


def test_past_timestamp_is_kept() -> None:
    assert parse_due_time("2000-01-01T00:00:00Z", NOW) == 946_684_800_000


@pytest.mark.parametrize("text", POINT_INVALID)
@pytest.mark.parametrize(
    ("field", "parse"),
    [("due_time", parse_due_time), ("ttl", parse_ttl)],
)
def test_invalid_due_time_and_ttl(
    text: str, field: str, parse: Callable[[str, int], int | None]
) -> None:
    with pytest.raises(InvalidReminderError) as info:
        parse(text, NOW)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"invalid {field} ")
    assert repr(text[:40]).rstrip("'") in message


@pytest.mark.parametrize(
    ("text", "period"), PERIOD_VALID + [(t, Period(ms)) for t, ms in GO_VALID if ms]
)
def test_period_valid(text: str, period: Period) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize("text", PERIOD_INVALID)
def test_period_invalid(text: str) -> None:
    with pytest.raises(InvalidReminderError) as info:
        parse_period(text)
    assert info.value.field == "period"
    assert str(info.value).startswith(f"invalid period {text!r}: ")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("-1s", "due_time", "negative"),
        ("P1M", "ttl", "months"),
        ("P1Y", "period", "years"),
        ("R0/PT1S", "period", "R0"),
        ("PT0S", "period", "longer than zero"),
        ("R5/PT1S", "ttl", "only allowed in a period"),
        ("876601h", "due_time", "100 years"),
        ("2024-02-30T00:00:00Z", "due_time", "day is out of range"),
        ("x" * 200, "ttl", f"longer than {MAX_TEXT_LENGTH} characters"),
        ("1x", "due_time", "RFC 3339 timestamp"),
        ("1x", "period", "R5/PT10S"),
        ("P1.5DT2H", "period", "last ISO 8601 component"),
    ],
)
def test_error_messages_say_why(text: str, field: str, words: str) -> None:
    with pytest.raises(InvalidReminderError) as info:
        if field == "period":
            parse_period(text)
        elif field == "ttl":
            parse_ttl(text, NOW)
        else:
            parse_due_time(text, NOW)
    assert info.value.field == field
    assert words in str(info.value)


def test_error_hierarchy() -> None:
    error = InvalidReminderError("key.name", "invalid key.name '': empty")
    assert isinstance(error, RemindersError)
    assert (error.field, error.message, str(error)) == ("key.name", error.message, error.message)
    not_leader = NotLeaderError("10.0.0.1:7000")
    assert isinstance(not_leader, RemindersError)
    assert not_leader.leader_hint == "10.0.0.1:7000"
    assert "10.0.0.1:7000" in str(not_leader)
    assert NotLeaderError(None).leader_hint is None


# --- properties ---------------------------------------------------------------------

go_units = st.sampled_from(
    [("h", Fraction(H)), ("m", Fraction(M)), ("s", Fraction(S)), ("ms", Fraction(1)),
     ("us", Fraction(1, 1000)), ("\u00b5s", Fraction(1, 1000)), ("ns", Fraction(1, 10**6))]
)  # fmt: skip


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 10_000), go_units), min_size=1, max_size=6))
def test_go_composite_durations(parts: list[tuple[int, tuple[str, Fraction]]]) -> None:
    text = "".join(f"{n}{unit}" for n, (unit, _) in parts)
    exact = sum((n * ms for n, (_, ms) in parts), Fraction(0))
    assert parse_duration(text, "ttl") == math.ceil(exact)


@SETTINGS
@given(
    st.integers(0, 3000),  # with the days, stays under the 100-year limit
    st.integers(0, 9999),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 999),
)
def test_iso_durations(weeks: int, days: int, hours: int, minutes: int, s: int, ms: int) -> None:
    text = f"P{weeks}W{days}DT{hours}H{minutes}M{s}.{ms:03d}S"
    expected = ((weeks * 7 + days) * 24 + hours) * H + minutes * M + s * S + ms
    assert parse_duration(text, "period") == expected


@SETTINGS
@given(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 12, 30)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_rfc3339_agrees_with_datetime(local: datetime, offset_minutes: int) -> None:
    moment = local.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = moment.isoformat()  # RFC 3339 shaped, fraction of 6 digits when nonzero
    since_epoch = moment - datetime(1970, 1, 1, tzinfo=UTC)
    expected = math.ceil(Fraction(since_epoch // timedelta(microseconds=1), 1000))
    assert parse_rfc3339(text, "due_time") == expected


@SETTINGS
@given(st.integers(0, MAX_DURATION_MS), st.integers(-(10**13), 10**13))
def test_durations_count_from_now(ms: int, now_ms: int) -> None:
    assert parse_due_time(f"{ms}ms", now_ms) == now_ms + ms
    assert parse_ttl(f"{ms}ms", now_ms) == now_ms + ms


@SETTINGS
@given(st.integers(0, 10**12))
def test_sub_millisecond_rounds_up(ns: int) -> None:
    ms = parse_duration(f"{ns}ns", "due_time")
    assert ms * 10**6 >= ns
    assert (ms - 1) * 10**6 < ns or ms == 0


@SETTINGS
@given(st.text(alphabet=st.sampled_from("0123456789PTRWDHMSYhmsun.,:+-/Zz \u00b5"), max_size=30))
def test_garbage_only_raises_invalid_reminder(text: str) -> None:
    for parse in (
        lambda: parse_due_time(text, NOW),
        lambda: parse_ttl(text, NOW),
        lambda: parse_period(text),
    ):
        try:
            parse()
        except InvalidReminderError as error:
            assert text[:40] in str(error)


@SETTINGS
@given(st.text(max_size=40))
def test_arbitrary_text_only_raises_invalid_reminder(text: str) -> None:
    parsers: list[tuple[str, Callable[[], object]]] = [
        ("due_time", lambda: parse_due_time(text, NOW)),
        ("ttl", lambda: parse_ttl(text, NOW)),
        ("period", lambda: parse_period(text)),
    ]
    for field, parse in parsers:
        try:
            parse()
        except InvalidReminderError as error:
            assert error.field == field
