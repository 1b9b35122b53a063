"""The emulator's Digital Human API: a configurable catalogue of avatars and timbres, and its three
asset actions (docs/zego-digital-human-api.md §2-§4).

The API is served under ``EMULATOR_DIGITAL_HUMAN_PATH`` of the emulator's own base URL, with the
same gateway checks (signature, AppId, Timestamp ...) and rate buckets as the AI Agent API. Its
business codes are the Digital Human API's own: ``400000001`` for a bad parameter, ``400000003``
for a digital human that is unknown or not this app's.

The catalogue is also what ``Create*DigitalHumanAgentInstance`` checks ids against
(:func:`check_create_id`): an unknown id is ``410001027``, another app's private avatar ``410001048``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from . import errors
from .errors import ZegoError
from .validation import Fields, Json

__all__ = [
    "DEFAULT_AVATARS",
    "DEFAULT_TIMBRES",
    "DH_ACTIONS",
    "DIGITAL_HUMAN_PATH",
    "PUBLIC_TEST_AVATAR",
    "Avatar",
    "Catalogue",
    "Timbre",
    "check_create_id",
]

DIGITAL_HUMAN_PATH: Final = "/digitalhuman"
"""Where the Digital Human API (a separate ZEGO host) is served on the emulator's own base URL. The
gateway's ``service.zego.digital_human.EMULATOR_DIGITAL_HUMAN_PATH`` must equal it (a test pins it)."""

PUBLIC_TEST_AVATAR: Final = "63c3aa64-1d80-4b04-a0be-1c65614eb7eb"
"""The public test DigitalHumanId of ZEGO's current digital-human quick start (AI Agent spec §5.7)."""

DH_INVALID_PARAMETER: Final = 400000001
DH_NOT_FOUND: Final = 400000003
AVATAR_URL_VALIDITY_SECONDS: Final = 86400
"""ZEGO: an AvatarUrl "is valid for 24 hours" (§3)."""


@dataclass(frozen=True)
class Avatar:
    """One catalogue digital human.

    ``owner_app_id`` None means this app's own (private) or ZEGO's (public); another AppId makes it an
    avatar the emulated app may not use: invisible to the asset API, ``410001048`` on create.
    """

    digital_human_id: str
    name: str
    public: bool
    actions: tuple[tuple[str, str], ...] = ()
    """(Action name, PreviewUrl) pairs."""
    inference_modes: tuple[int, ...] = (1,)
    owner_app_id: int | None = None


@dataclass(frozen=True)
class Timbre:
    """One catalogue timbre; ``digital_human_id`` None makes it public, else it is bound to that avatar."""

    timbre_id: str
    name: str
    digital_human_id: str | None = None


_PREVIEW = "https://emulator.invalid/actions"

DEFAULT_AVATARS: Final = (
    Avatar(
        PUBLIC_TEST_AVATAR,
        "Quick-start presenter",
        public=True,
        actions=(("wave", f"{_PREVIEW}/wave.mp4"), ("nod", f"{_PREVIEW}/nod.mp4")),
        inference_modes=(1, 2),
    ),
    # The quick start's previous public test id; ZEGO's large-class guide still uses it (spec §15.13).
    Avatar("c4b56d5c-db98-4d91-86d4-5a97b507da97", "Former quick-start presenter", public=True),
    # The id in ZEGO's GetDigitalHumanInfo example.
    Avatar(
        "fa592895-d988-4584-b27b-97b8f4b921ad",
        "Documentation sample",
        public=True,
        actions=(("greet", f"{_PREVIEW}/greet.mp4"),),
    ),
    # The id in ZEGO's GetTimbreList example, here a private avatar made from one photo.
    Avatar("42f97c28-1124-4cb2-800a-44d028497027", "My photo avatar", public=False, inference_modes=(1, 2)),
    Avatar("0d6f3b1e-6a7c-4c1e-9d0b-5b1f2a3c4d5e", "My video avatar", public=False),
    Avatar("7e1c9a40-3b2d-4f5e-8a6b-9c0d1e2f3a4b", "Another app's avatar", public=False, owner_app_id=1),
)
"""Three public avatars, two private ones, and one that belongs to another app."""

DEFAULT_TIMBRES: Final = (
    Timbre("zh_female_1", "Warm female (zh)"),
    Timbre("en_male_1", "Calm male (en)"),
    Timbre("en_female_1", "Bright female (en)"),
    Timbre("my_cloned_voice", "My cloned voice", digital_human_id="42f97c28-1124-4cb2-800a-44d028497027"),
)

DH_ACTIONS: Final = ("GetDigitalHumanList", "GetDigitalHumanInfo", "GetTimbreList")


def _window(f: Fields) -> tuple[int, int]:
    offset = _int(f, "Offset", 0, 0, 1_000_000)
    limit = _int(f, "Limit", 20, 1, 20)
    return offset, limit


def _int(f: Fields, key: str, default: int, lo: int, hi: int) -> int:
    value = f.raw(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ZegoError(DH_INVALID_PARAMETER, f"{key} must be an integer from {lo} to {hi}")
    return value


@dataclass
class Catalogue:
    """The emulated app's digital-human assets, read by the three actions and by creates."""

    app_id: int
    avatars: tuple[Avatar, ...] = DEFAULT_AVATARS
    timbres: tuple[Timbre, ...] = DEFAULT_TIMBRES
    clock: Callable[[], float] = field(default=lambda: 0.0)

    def usable(self, digital_human_id: str) -> Avatar | None:
        """The avatar if this app may use it."""
        for avatar in self.avatars:
            if avatar.digital_human_id == digital_human_id:
                return avatar if avatar.owner_app_id in (None, self.app_id) else None
        return None

    def _url(self, avatar: Avatar) -> str:
        expires = int(self.clock()) + AVATAR_URL_VALIDITY_SECONDS
        return f"https://emulator.invalid/avatars/{avatar.digital_human_id}.png?Expires={expires}"

    def _summary(self, avatar: Avatar) -> Json:
        return {
            "DigitalHumanId": avatar.digital_human_id,
            "Name": avatar.name,
            "AvatarUrl": self._url(avatar),
            "IsPublic": avatar.public,
            "InferenceModes": list(avatar.inference_modes),
        }

    def list(self, f: Fields) -> Json:
        """GetDigitalHumanList: FetchMode 1 all, 2 public, 3 private; InferenceMode filters (§2)."""
        mode = _int(f, "InferenceMode", 1, 1, 2)
        fetch = _int(f, "FetchMode", 1, 1, 3)
        offset, limit = _window(f)
        matches = [
            a
            for a in self.avatars
            if a.owner_app_id in (None, self.app_id)
            and mode in a.inference_modes
            and (fetch == 1 or a.public == (fetch == 2))
        ]
        page = matches[offset : offset + limit]
        return {"Total": len(matches), "DigitalHumans": [self._summary(a) for a in page]}

    def info(self, f: Fields) -> Json:
        """GetDigitalHumanInfo (§3); unknown or another app's avatar is 400000003."""
        dh_id = f.raw("DigitalHumanId")
        if not isinstance(dh_id, str) or not dh_id:
            raise ZegoError(DH_INVALID_PARAMETER, "DigitalHumanId is required")
        avatar = self.usable(dh_id)
        if avatar is None:
            raise ZegoError(DH_NOT_FOUND, f"digital human {dh_id[:64]} not found")
        return {
            **self._summary(avatar),
            "Actions": [{"Action": name, "PreviewUrl": url} for name, url in avatar.actions],
        }

    def timbre_list(self, f: Fields) -> Json:
        """GetTimbreList (§4): public timbres, or the private ones bound to a usable avatar."""
        dh_id = f.raw("DigitalHumanId")
        if dh_id is not None and not isinstance(dh_id, str):
            raise ZegoError(DH_INVALID_PARAMETER, "DigitalHumanId must be a string")
        offset, limit = _window(f)
        if dh_id:
            if self.usable(dh_id) is None:
                # [INFER] ZEGO does not say; an id that is not "valid" gets the not-found code.
                raise ZegoError(DH_NOT_FOUND, f"digital human {dh_id[:64]} not found")
            matches = [t for t in self.timbres if t.digital_human_id == dh_id]
        else:
            matches = [t for t in self.timbres if t.digital_human_id is None]
        page = matches[offset : offset + limit]
        return {
            "Total": len(matches),
            "Timbres": [{"TimbreId": t.timbre_id, "Name": t.name} for t in page],
        }

    def run(self, action: str, f: Fields) -> Json:
        """Run one of :data:`DH_ACTIONS` against a parsed body."""
        handlers: dict[str, Callable[[Fields], Json]] = {
            "GetDigitalHumanList": self.list,
            "GetDigitalHumanInfo": self.info,
            "GetTimbreList": self.timbre_list,
        }
        return handlers[action](f)


def check_create_id(catalogue: Catalogue, digital_human_id: str) -> None:
    """What ``Create*DigitalHumanAgentInstance`` answers for an id outside the catalogue (§6.10)."""
    for avatar in catalogue.avatars:
        if avatar.digital_human_id == digital_human_id:
            if avatar.owner_app_id not in (None, catalogue.app_id):
                raise ZegoError(
                    errors.DH_NOT_OWNED,
                    f"DigitalHuman.DigitalHumanId {digital_human_id[:64]} is not this app's",
                )
            return
    raise ZegoError(
        errors.DH_ID_INCORRECT, f"DigitalHuman.DigitalHumanId {digital_human_id[:64]} is incorrect"
    )


def catalogue_from_json(payload: Any) -> tuple[tuple[Avatar, ...], tuple[Timbre, ...]]:
    """Avatars and timbres from admin/CLI JSON: ``{"avatars": [...], "timbres": [...]}``.

    Each avatar: ``digital_human_id``, ``name``, ``public`` and optionally ``actions`` ([[name, url]]),
    ``inference_modes`` and ``owner_app_id``. Each timbre: ``timbre_id``, ``name``, ``digital_human_id``.

    Raises:
        ValueError: the JSON does not have that shape.
    """
    if not isinstance(payload, dict):
        raise ValueError("the catalogue must be a JSON object with avatars and timbres")
    try:
        avatars = tuple(
            Avatar(
                digital_human_id=str(a["digital_human_id"]),
                name=str(a.get("name", "")),
                public=bool(a.get("public", False)),
                actions=tuple((str(n), str(u)) for n, u in a.get("actions", [])),
                inference_modes=tuple(int(m) for m in a.get("inference_modes", [1])),
                owner_app_id=None if a.get("owner_app_id") is None else int(a["owner_app_id"]),
            )
            for a in payload.get("avatars", [])
        )
        timbres = tuple(
            Timbre(str(t["timbre_id"]), str(t.get("name", "")), t.get("digital_human_id"))
            for t in payload.get("timbres", [])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad catalogue entry: {exc}") from None
    return avatars, timbres
