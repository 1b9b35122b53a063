"""ZEGO AI Agent API endpoints by region (spec §1.1).

ZEGO advises calling the endpoint in your own server's region; ``unified`` routes anywhere and is what
ZEGO's samples use. Every endpoint, China and overseas, lives under ``zegotech.cn``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_REGION", "REGION_BASE_URLS", "resolve_base_url"]

DEFAULT_REGION: Final = "unified"

#: Region name -> base URL, no trailing slash. Read-only so no caller can repoint a region at runtime.
REGION_BASE_URLS: Final = MappingProxyType(
    {
        "unified": "https://aigc-aiagent-api.zegotech.cn",
        "sha": "https://aigc-aiagent-api-sha.zegotech.cn",  # Mainland China (Shanghai)
        "hkg": "https://aigc-aiagent-api-hkg.zegotech.cn",  # HK / Macao / Taiwan
        "fra": "https://aigc-aiagent-api-fra.zegotech.cn",  # Europe (Frankfurt)
        "lax": "https://aigc-aiagent-api-lax.zegotech.cn",  # US West (California)
        "bom": "https://aigc-aiagent-api-bom.zegotech.cn",  # Asia-Pacific (Mumbai)
        "sgp": "https://aigc-aiagent-api-sgp.zegotech.cn",  # Southeast Asia (Singapore)
    }
)


def resolve_base_url(value: str) -> str:
    """Turn a region name (``"sgp"``) or an explicit ``http(s)://`` URL into a base URL.

    Region names are matched case-insensitively. An explicit URL is accepted as is (minus a trailing
    slash) so tests and the local emulator can point the client at ``http://127.0.0.1:<port>``.

    Raises:
        ValueError: ``value`` is neither a known region nor an absolute http(s) URL with a host.
    """
    candidate = value.strip()
    region = REGION_BASE_URLS.get(candidate.lower())
    if region is not None:
        return region
    parts = urlsplit(candidate)
    if parts.scheme in ("http", "https") and parts.netloc:
        if parts.query or parts.fragment:
            # The client appends its own signed query; a pre-set one would be silently merged.
            raise ValueError(f"ZEGO base URL must not carry a query or fragment: {candidate!r}")
        return candidate.rstrip("/")
    known = ", ".join(sorted(REGION_BASE_URLS))
    raise ValueError(
        f"unknown ZEGO region or base URL {candidate!r}: use one of {known}, or an http(s):// URL"
    )
