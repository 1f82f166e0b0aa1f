"""A request aiohttp cannot parse is the client's fault: one INFO line in the sidecar's
log, not an ERROR with a traceback per request (`sidecar.http.ClientFaultFilter`)."""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import LineTooLong

from sidecar.http import ClientFaultFilter


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
        ("127.0.0.1",), info,
    )  # fmt: skip


def test_a_request_that_does_not_parse_is_one_info_line() -> None:
    record = _record(LineTooLong("a very long line", "8190"))
    assert ClientFaultFilter().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage().startswith("Error handling request from 127.0.0.1: 400 ")
    assert "\n" not in record.getMessage()


def test_a_failure_of_the_server_itself_keeps_its_traceback() -> None:
    record = _record(RuntimeError("a bug"))
    assert ClientFaultFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_record_without_an_exception_is_left_alone() -> None:
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "plain", (), None)
    assert ClientFaultFilter().filter(record) and record.levelno == logging.ERROR
