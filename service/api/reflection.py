"""Server reflection as both ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcio-reflection ships only v1alpha; grpcurl, Postman and current gRPC tools ask for v1 first. The
two protocols are the same messages under another package name (the v1 ``reflection.proto`` is a
copy of v1alpha's), so their bytes on the wire are identical. We therefore:

* add a ``grpc/reflection/v1/reflection.proto`` descriptor to the default pool, made from
  v1alpha's by renaming its package, so v1 can describe itself like every other service;
* serve ``/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`` with the one v1alpha
  servicer, decoding and encoding with v1alpha's (wire-identical) message classes.

Both go through :class:`service.api.rpc_handlers.RpcHandlers`, so both get metrics. Should a later
grpcio-reflection (pinned below 1.86) ship its own v1 module, use it instead: importing it after
this file was added would be a duplicate file in the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from service.api.rpc_handlers import RpcHandlers

__all__ = ["V1ALPHA_SERVICE_NAME", "V1_SERVICE_NAME", "reflection_services", "register_reflection"]

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_ALPHA_PACKAGE, _V1_PACKAGE = "grpc.reflection.v1alpha", "grpc.reflection.v1"


def _v1_descriptor() -> ServiceDescriptor:
    """The v1 ServerReflection service, added to the default pool once per process."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName(V1_SERVICE_NAME)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = _V1_FILE, _V1_PACKAGE
    alpha, v1 = f".{_ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(alpha):
                field.type_name = v1 + field.type_name[len(alpha) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = v1 + method.input_type[len(alpha) :]
            method.output_type = v1 + method.output_type[len(alpha) :]
    pool.Add(proto)
    return pool.FindServiceByName(V1_SERVICE_NAME)


def reflection_services() -> list[ServiceDescriptor]:
    """Both reflection services' descriptors (for metrics pre-initialisation)."""
    return [reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"], _v1_descriptor()]


def register_reflection(handlers: RpcHandlers, service_names: Sequence[str]) -> None:
    """Serve reflection for ``service_names`` (plus both reflection services) as v1 and v1alpha."""
    _v1_descriptor()
    # reflection.aio is public (in reflection's __all__), but declared in a branch mypy skips.
    servicer: Any = reflection.aio.ReflectionServicer(  # type: ignore[attr-defined]
        (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    )
    # What reflection.enable_server_reflection does for an aio server, here through RpcHandlers.
    handlers.register(reflection_pb2_grpc.add_ServerReflectionServicer_to_server, servicer)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    handlers.add_registered_method_handlers(V1_SERVICE_NAME, {"ServerReflectionInfo": v1})
