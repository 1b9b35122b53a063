"""Who is in which RTC room, as the emulator believes it (the emulator has no real RTC side).

Presence drives MaxIdleTime (an instance whose creating user is absent that long is deleted with Code 1202)
and publishing drives walkie-talkie StartListening (``410001046`` while the user is not publishing). Tests and
demos set both through ``POST /_emulator/rooms/{room_id}/users/{user_id}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .validation import Json

__all__ = ["RoomUser", "Rooms"]


@dataclass
class RoomUser:
    """One user in one room: present since/absent since ``since`` (monotonic seconds)."""

    present: bool
    since: float
    publishing: bool = True


class Rooms:
    """Presence and publishing flags per (room, user)."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], RoomUser] = {}

    def set(
        self, room_id: str, user_id: str, now: float, *, present: bool | None, publishing: bool | None
    ) -> Json:
        """Admin update; a user not seen before starts present and publishing."""
        entry = self._users.setdefault((room_id, user_id), RoomUser(present=True, since=now))
        if present is not None and present != entry.present:
            entry.present, entry.since = present, now
        if publishing is not None:
            entry.publishing = publishing
        return self._to_json(room_id, user_id, entry)

    def joined(self, room_id: str, user_id: str, now: float) -> None:
        """[INFER] The creating user counts as present when the instance starts, since ZEGO asks callers to
        create it right after the client joined; an earlier admin call saying otherwise is kept."""
        self._users.setdefault((room_id, user_id), RoomUser(present=True, since=now))

    def absent_since(self, room_id: str, user_id: str) -> float | None:
        """When the user left the room, or None while present (or unknown)."""
        entry = self._users.get((room_id, user_id))
        return entry.since if entry is not None and not entry.present else None

    def publishing(self, room_id: str, user_id: str) -> bool:
        """Whether the user publishes a stream (unknown users are assumed to)."""
        entry = self._users.get((room_id, user_id))
        return entry is None or entry.publishing

    def snapshot(self) -> list[Json]:
        """Every known (room, user) for the admin view."""
        return [self._to_json(r, u, e) for (r, u), e in self._users.items()]

    def clear(self) -> None:
        """Forget everyone."""
        self._users.clear()

    @staticmethod
    def _to_json(room_id: str, user_id: str, entry: RoomUser) -> Json:
        return {
            "room_id": room_id,
            "user_id": user_id,
            "present": entry.present,
            "publishing": entry.publishing,
        }
