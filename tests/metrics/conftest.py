"""Fixtures for the metrics tests."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture
def promtool() -> str:
    """Path of promtool (Debian's ``prometheus`` package). Missing: skip locally, fail in CI."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "") not in ("", "false"):
            pytest.fail("promtool is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install -y prometheus); CI runs this check")
    return path
