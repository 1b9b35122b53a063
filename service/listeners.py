"""Listen addresses: splitting ``HOST:PORT`` and checking, before anything starts, that each
configured address can be bound, so a busy port fails with the setting named."""

from __future__ import annotations

import socket

from service.config import ListenSettings

__all__ = ["ListenError", "check_listen", "check_listeners", "split_address"]


def split_address(listen: str) -> tuple[str, int]:
    """``"[::1]:50051"`` -> ``("::1", 50051)``."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class ListenError(OSError):
    """A listen address cannot be bound (busy, not local, not resolvable); names the setting."""

    def __init__(self, setting: str, address: str, reason: str) -> None:
        super().__init__(f"cannot listen on {address} ({setting}): {reason}")
        self.setting = setting
        self.address = address


def check_listen(setting: str, listen: str) -> None:
    """Bind ``listen`` once and release it, as the servers will (SO_REUSEADDR, no SO_REUSEPORT).

    Raises:
        ListenError: the address is busy, invalid or not resolvable.
    """
    host, port = split_address(listen)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:  # socket.gaierror included
        raise ListenError(setting, listen, exc.strerror or str(exc)) from None


def check_listeners(listen: ListenSettings) -> None:
    """Check every address the gateway will bind (``http_listen`` only when it serves something).

    Raises:
        ListenError: naming the first setting whose address cannot be bound.
    """
    check_listen("grpc_listen", listen.grpc)
    http_unused = listen.callback is not None and listen.admin is not None
    for name, address in (
        ("http_listen", None if http_unused else listen.http),
        ("callback_listen", listen.callback),
        ("admin_listen", listen.admin),
    ):
        if address is not None:
            check_listen(name, address)
