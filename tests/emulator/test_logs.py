"""The standalone emulator's JSON logs: quiet about httpx, and nothing left behind in the process."""

from __future__ import annotations

import io
import json
import logging

import pytest

from zego_emulator import logs


def test_json_lines_without_httpx_chatter_and_no_logger_levels_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    httpx_level = logging.getLogger("httpx").level
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    logs.configure_logging("INFO")
    logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1/callbacks 200 OK")
    logging.getLogger("httpx").warning("something is wrong")
    logging.getLogger("zego_emulator").info("ZEGO emulator listening", extra={"url": "http://127.0.0.1:1"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("httpx", "WARNING", "something is wrong"),
        ("zego_emulator", "INFO", "ZEGO emulator listening"),
    ]
    assert lines[1]["url"] == "http://127.0.0.1:1" and lines[1]["time"].endswith("Z")
    # A filter on its own handler, not a level on httpx's logger, which would outlive the handler.
    assert logging.getLogger("httpx").level == httpx_level
