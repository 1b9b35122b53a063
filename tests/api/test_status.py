"""The one error-mapping table, row by row."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from service import errors
from service.api.status import MAX_FIELD_VIOLATIONS, MAX_MESSAGE_BYTES, clip, to_status
from service.zego import exceptions as zx
from tests.conftest import unpack_details


def _details(status: status_pb2.Status) -> dict[type[Message], Message]:
    return {type(detail): detail for detail in unpack_details(status)}


def api_error(code: int, action: str = "RegisterAgent") -> zx.ZegoApiError:
    return zx.from_code(code, "upstream says no", "1843985617336143872", action)


CASES = [
    (api_error(410001008), grpc.StatusCode.ALREADY_EXISTS, "AGENT_ALREADY_EXISTS", []),
    (api_error(410001009), grpc.StatusCode.NOT_FOUND, "AGENT_NOT_FOUND", []),
    (api_error(410001002), grpc.StatusCode.NOT_FOUND, "INSTANCE_NOT_FOUND", []),
    (api_error(410000011), grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_CONCURRENCY_LIMIT",
     [error_details_pb2.QuotaFailure, error_details_pb2.RetryInfo]),
    (api_error(410001031), grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_CONCURRENCY_LIMIT",
     [error_details_pb2.QuotaFailure]),
    (api_error(410001025), grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_CONCURRENCY_LIMIT",
     [error_details_pb2.QuotaFailure]),
    (api_error(410001029), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_RATE_LIMITED",
     [error_details_pb2.RetryInfo]),
    (api_error(100000005), grpc.StatusCode.INTERNAL, "ZEGO_CREDENTIALS_REJECTED", []),
    (api_error(100000004), grpc.StatusCode.INTERNAL, "ZEGO_CREDENTIALS_REJECTED", []),
    (api_error(410000003), grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_REJECTED_INPUT", []),
    (api_error(100000006), grpc.StatusCode.INTERNAL, "UPSTREAM_REQUEST_MALFORMED", []),
    (api_error(410001041), grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_STATE_CONFLICT", []),
    (api_error(410001042), grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_STATE_CONFLICT", []),
    (api_error(410000001), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_ERROR", [error_details_pb2.RetryInfo]),
    (zx.ZegoTimeout("ListAgents", "timed out"), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_TIMEOUT",
     [error_details_pb2.RetryInfo]),
    (zx.ZegoConnectError("ListAgents", "refused"), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE",
     [error_details_pb2.RetryInfo]),
    (zx.ZegoProtocolError("ListAgents", "HTTP 502"), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_PROTOCOL_ERROR",
     [error_details_pb2.RetryInfo]),
    (zx.ZegoDeadlineExceeded("ListAgents", "no budget"), grpc.StatusCode.DEADLINE_EXCEEDED,
     "DEADLINE_EXCEEDED", []),
    (errors.InvalidArgument([errors.FieldViolation("a.b", "is required")]), grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_ARGUMENT", [error_details_pb2.BadRequest]),
    (errors.RequestIdReused("r1"), grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED",
     [error_details_pb2.BadRequest]),
    (errors.NotFound("session", "s1", "SESSION_NOT_FOUND"), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND",
     [error_details_pb2.ResourceInfo]),
    (errors.FailedPrecondition("SESSION_NOT_ACTIVE", "s1", "session has ended"),
     grpc.StatusCode.FAILED_PRECONDITION, "SESSION_NOT_ACTIVE", [error_details_pb2.PreconditionFailure]),
    (errors.CapacityExhausted("voice", 10, 10, 5.0), grpc.StatusCode.RESOURCE_EXHAUSTED, "CAPACITY_EXHAUSTED",
     [error_details_pb2.QuotaFailure, error_details_pb2.RetryInfo]),
    (errors.Unavailable("SHUTTING_DOWN", "stopping"), grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN",
     [error_details_pb2.RetryInfo]),
    (errors.StoreError("ledger transaction failed: disk I/O error"), grpc.StatusCode.UNAVAILABLE,
     "LEDGER_UNAVAILABLE", [error_details_pb2.RetryInfo]),
    (errors.UnstorableValue("ledger cannot store a value: Python int too large"), grpc.StatusCode.INTERNAL,
     "LEDGER_UNSTORABLE_VALUE", []),
    (errors.TransitionConflict(None), grpc.StatusCode.ABORTED, "CONCURRENT_MODIFICATION", []),
    (errors.DuplicateEvent("event for 's1' was already stored"), grpc.StatusCode.ABORTED,
     "CONCURRENT_MODIFICATION", []),
    (errors.SubscriberTooSlow("resume after cursor 7"), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "SUBSCRIBER_TOO_SLOW", []),
    (errors.OutOfRange("CURSOR_AHEAD", "cursor 9 is ahead"), grpc.StatusCode.OUT_OF_RANGE,
     "CURSOR_AHEAD", []),
    (RuntimeError("secret stack detail"), grpc.StatusCode.INTERNAL, "INTERNAL_ERROR", []),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "code", "reason", "extra"), CASES)
def test_mapping_table(
    exc: Exception, code: grpc.StatusCode, reason: str, extra: list[type[Message]]
) -> None:
    status = to_status(exc, "req-1")
    assert status.code == getattr(code_pb2, code.name)
    details = _details(status)
    info = details[error_details_pb2.ErrorInfo]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (reason, "agentgw")
    assert details[error_details_pb2.RequestInfo].request_id == "req-1"  # type: ignore[attr-defined]
    for kind in extra:
        assert kind in details
    if isinstance(exc, zx.ZegoApiError):
        assert info.metadata["zego_code"] == str(exc.code)
        assert info.metadata["zego_request_id"] == "1843985617336143872"
        assert info.metadata["zego_action"] == exc.action


def test_unknown_errors_do_not_leak() -> None:
    status = to_status(RuntimeError("secret stack detail"), None)
    assert "secret" not in status.message


@pytest.mark.parametrize(
    "exc",
    [
        errors.StoreError("ledger statement failed: database is locked; SELECT * FROM sessions /data/x.db"),
        errors.UnstorableValue("ledger cannot store a value: INSERT INTO events VALUES ('secret')"),
        errors.TransitionConflict(None),
    ],
)
def test_store_errors_never_show_their_own_text(exc: errors.StoreError) -> None:
    status = to_status(exc, "r")
    for leaked in ("SELECT", "INSERT", "secret", "/data", "locked", "statement"):
        assert leaked not in status.message
    assert status.message


def test_upstream_timeout_with_spent_deadline_is_deadline_exceeded() -> None:
    status = to_status(zx.ZegoTimeout("ListAgents", "timed out"), "r", deadline_spent=True)
    assert status.code == code_pb2.DEADLINE_EXCEEDED


def test_quota_failure_carries_limit_and_usage() -> None:
    details = _details(to_status(errors.CapacityExhausted("digital_human", 10, 10, 2.5), "r"))
    quota = details[error_details_pb2.QuotaFailure]
    assert isinstance(quota, error_details_pb2.QuotaFailure)
    assert "10 of 10" in quota.violations[0].description
    retry = details[error_details_pb2.RetryInfo]
    assert retry.retry_delay.seconds == 2 and retry.retry_delay.nanos == 500_000_000  # type: ignore[attr-defined]


# --- every status fits in the trailers ------------------------------------------------------------

HUGE = "é" * 20_000  # two UTF-8 bytes each, percent-encoded to six in grpc-message


def test_a_bad_request_lists_at_most_20_violations_and_says_how_many_more() -> None:
    exc = errors.InvalidArgument(
        [errors.FieldViolation(f"messages[{i}].role", "is required") for i in range(200)]
    )
    [bad] = [d for d in unpack_details(to_status(exc, "r1")) if isinstance(d, error_details_pb2.BadRequest)]
    assert len(bad.field_violations) == MAX_FIELD_VIOLATIONS + 1
    assert [v.field for v in bad.field_violations[:2]] == ["messages[0].role", "messages[1].role"]
    assert bad.field_violations[-1].description == "and 180 more"


def test_few_violations_are_listed_in_full() -> None:
    exc = errors.InvalidArgument([errors.FieldViolation("a", "x"), errors.FieldViolation("b", "y")])
    [bad] = [d for d in unpack_details(to_status(exc, "r1")) if isinstance(d, error_details_pb2.BadRequest)]
    assert [(v.field, v.description) for v in bad.field_violations] == [("a", "x"), ("b", "y")]


@pytest.mark.parametrize(
    "exc",
    [
        errors.InvalidArgument([errors.FieldViolation(HUGE, HUGE) for _ in range(300)], HUGE),
        errors.InvalidArgument([errors.FieldViolation("label_selector", f"{HUGE!r} is not a label key")]),
        errors.NotFound(HUGE, HUGE, "SESSION_NOT_FOUND"),
        errors.FailedPrecondition("SESSION_NOT_ACTIVE", HUGE, HUGE),
        errors.Unavailable("SHUTTING_DOWN", HUGE, metadata={HUGE: HUGE}),
        zx.from_code(410000003, HUGE, HUGE, HUGE),
    ],
    ids=["300-violations", "echoed-selector", "not-found", "precondition", "unavailable", "zego"],
)
def test_every_status_fits_the_trailers_whatever_it_echoes(exc: Exception) -> None:
    status = to_status(exc, "r" * 64)
    # grpc-status-details-bin is base64 (4/3) and grpc-message percent-encoded (up to 3x): both
    # together stay far below gRPC's 8 KiB soft metadata limit.
    assert len(status.SerializeToString()) * 4 / 3 + len(status.message.encode()) * 3 < 7000
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
    assert status.message.endswith("...")


def test_clip_cuts_on_a_character_boundary() -> None:
    assert clip("abc", 10) == "abc"
    cut = clip("é" * 100, 11)
    assert cut == "éééé..." and len(cut.encode()) <= 11
