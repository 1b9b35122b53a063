"""Types and ranges of ZEGO callbacks (spec §8.2, §8.3, §10), checked before anything is stored.

ZEGO documents every number of a callback as an int64 or a float64 and every text as a string,
so a value outside those cannot be ZEGO's: it is refused with a reason (the HTTP side answers 400)
instead of being stored and failing every stream that later reads it. Two layers:

* :func:`parse_body` reads the bytes (strict UTF-8 JSON, an object), then
  :func:`check_values` allows at most :data:`MAX_DEPTH` levels of nesting, every integer inside
  int64, every float finite (``1e400`` is not), every string valid Unicode (no lone surrogate).
  After it, any value anywhere in the body, free-form fields included, can be stored in SQLite and
  written into a protobuf message.
* the field readers (:func:`integer`, :func:`number`, :func:`text`) check, by name, the fields the
  gateway interprets, against the spec's types and the ranges of the proto fields they become
  (a ``Timestamp`` ends at 9999-12-31, an ``int32`` at 2**31 - 1).

Lenient where the meaning is unambiguous (a Number sent as a decimal string, a number where text
is expected), strict where it is not (``"fast"`` for a millisecond count).
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "TIMESTAMP_MS_MAX",
    "CallbackError",
    "Problem",
    "check_values",
    "integer",
    "number",
    "parse_body",
    "text",
]

MAX_DEPTH = 20
"""Most levels of nesting in a callback body (the body itself is level 1).

ZEGO's deepest documented shape is 3 (``Data.LatencyData``, ``Data.MetaInfo``). 20 leaves room for
free-form MetaInfo and keeps every Struct far inside protobuf's parse limit of 100 nested messages
(each JSON level costs two or three), which a subscriber in any language would otherwise hit."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
TIMESTAMP_MS_MAX = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z in ms: the last instant a protobuf ``Timestamp`` can hold."""
_MAX_DIGITS = 19  # a decimal string of more digits is outside int64 anyway
_MAX_PATH = 120


class Problem(enum.StrEnum):
    """Why a callback was refused (the ``problem`` label of ``agentgw_callbacks_invalid_total``)."""

    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    MISSING = "missing"
    UNKNOWN_EVENT = "unknown_event"
    UNSTORABLE = "unstorable"


class CallbackError(ValueError):
    """A callback body that cannot be a ZEGO event; ``field`` names the culprit, ``problem`` the kind."""

    def __init__(self, field: str, problem: str, kind: Problem = Problem.WRONG_TYPE) -> None:
        field = field if len(field) <= _MAX_PATH else field[: _MAX_PATH - 3] + "..."
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = kind


def parse_body(body: bytes) -> tuple[dict[str, Any], str]:
    """The JSON object of a callback body, and the body as text (then see :func:`check_values`).

    Raises:
        CallbackError: the body is not UTF-8 JSON, not an object, or too deep to parse.
    """
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackError("body", "is not UTF-8", Problem.NOT_JSON) from None
    try:
        # NaN and Infinity (not JSON, but Python reads them) are refused by check_values, by field.
        data = json.loads(raw)
    except RecursionError:
        raise CallbackError("body", f"is nested deeper than {MAX_DEPTH} levels", Problem.TOO_DEEP) from None
    except ValueError:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise CallbackError("body", "is not JSON", Problem.NOT_JSON) from None
    if not isinstance(data, dict):
        raise CallbackError("body", "is not a JSON object", Problem.NOT_JSON)
    return data, raw


def check_values(root: dict[str, Any], raw: str) -> None:
    """Check every value below ``root`` (parsed from ``raw``), iteratively, whatever the depth.

    Raises:
        CallbackError: nested deeper than :data:`MAX_DEPTH`, an integer outside int64, a float that
            is not finite, a string that is not valid Unicode.
    """
    # A lone surrogate can only come from a \\uD800-style escape: skip the encode check without one.
    unicode_escapes = "\\u" in raw
    stack: list[tuple[dict[str, Any] | list[Any], int, str]] = [(root, 1, "")]
    while stack:
        container, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise CallbackError(path or "body", f"is nested deeper than {MAX_DEPTH} levels", Problem.TOO_DEEP)
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            # The common case (str, or an int in range) costs two type checks; paths are built only
            # for containers and errors.
            if isinstance(value, str):
                if unicode_escapes:
                    _check_text(value, _path(path, key))
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1, _path(path, key)))
            elif isinstance(value, bool) or value is None:
                pass
            elif isinstance(value, int):
                if not INT64_MIN <= value <= INT64_MAX:
                    raise CallbackError(
                        _path(path, key), "is outside the 64-bit integer range", Problem.OUT_OF_RANGE
                    )
            elif isinstance(value, float) and not math.isfinite(value):
                raise CallbackError(_path(path, key), "is not a finite number", Problem.OUT_OF_RANGE)
            if unicode_escapes and isinstance(key, str):
                _check_text(key, _path(path, key))


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _check_text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CallbackError(where, "is not valid Unicode (a lone surrogate)", Problem.UNSTORABLE) from None


def _field(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def integer(
    obj: dict[str, Any],
    key: str,
    path: str = "",
    *,
    low: int = 0,
    high: int = INT64_MAX,
    required: bool = False,
    rounding: bool = False,
) -> int | None:
    """``obj[key]`` as an int in ``[low, high]``; None when absent (or null) and not ``required``.

    A decimal string of ASCII digits counts as its number (ZEGO's ids and Sequences may come as
    text). With ``rounding``, a finite float is rounded (ZEGO's LatencyData are averages).
    """
    value = obj.get(key)
    where = _field(path, key)
    if value is None:
        if required:
            raise CallbackError(where, "is required", Problem.MISSING)
        return None
    if isinstance(value, bool):
        raise CallbackError(where, "must be an integer, not a boolean")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        value = int(value)
    elif isinstance(value, float) and rounding:
        value = round(value)  # finite: parse_body refused the others
    if not isinstance(value, int):
        raise CallbackError(where, "must be an integer")
    if not low <= value <= high:
        raise CallbackError(where, f"must be between {low} and {high}", Problem.OUT_OF_RANGE)
    return value


def number(obj: dict[str, Any], key: str, path: str = "") -> float | None:
    """``obj[key]`` as a finite float (an int or a decimal string will do); None when absent."""
    value = obj.get(key)
    where = _field(path, key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise CallbackError(where, "must be a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CallbackError(where, "must be a number")
    if not math.isfinite(value):
        raise CallbackError(where, "must be a finite number", Problem.OUT_OF_RANGE)
    return float(value)


def text(obj: dict[str, Any], key: str, path: str = "") -> str:
    """``obj[key]`` as text: "" when absent or null, a number as its JSON text; not an object."""
    value = obj.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    raise CallbackError(_field(path, key), "must be a string")
