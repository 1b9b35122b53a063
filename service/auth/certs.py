"""The principal of a client certificate (mTLS): its SPIFFE id if it has one, else its subject CN.

gRPC has already verified the chain against ``AGENTGW_TLS_CLIENT_CA_FILE`` by the time a call is
served; this only reads who the verified certificate names, from the call's auth context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["certificate_identity", "parse_roles"]

from service.auth.principal import Role


def certificate_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The identity of the peer's verified certificate, or None without one.

    The SPIFFE URI SAN (``spiffe://trust-domain/path``) wins; otherwise the subject's common name.
    """
    pems = list(auth_context.get("x509_pem_cert") or ())
    if not pems:
        return None
    try:
        cert = x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith("spiffe://"):
                return str(uri)
    except x509.ExtensionNotFound:
        pass
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        value = names[0].value
        cn = value.decode() if isinstance(value, bytes) else value
        return cn or None
    return None


def parse_roles(raw: str) -> dict[str, Role]:
    """``AGENTGW_AUTH_ROLES``: comma-separated ``identity=role`` pairs, e.g. ``sre-bot=viewer,ops=admin``.

    Raises:
        ValueError: a pair is malformed or names an unknown role.
    """
    roles: dict[str, Role] = {}
    for pair in raw.split(","):
        pair = pair.strip()
        if not pair:
            continue
        name, sep, role = pair.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected identity=role pairs, got {pair[:64]!r}")
        roles[name.strip()] = Role.parse(role.strip())
    return roles
