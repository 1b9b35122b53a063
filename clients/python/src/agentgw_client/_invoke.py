"""One unary call, as every service object makes it: request id, credentials, retries, deadline."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from agentgw_client.credentials import Credentials
from agentgw_client.errors import AgentGwError, DeadlineExceeded, from_rpc_error
from agentgw_client.retry import RetryPolicy

__all__ = ["REQUEST_ID_HEADER", "Invoker", "new_request_id"]

REQUEST_ID_HEADER = "x-request-id"
Resp = TypeVar("Resp", bound=Message)


def new_request_id() -> str:
    """A fresh idempotency key / request id (32 hex digits)."""
    return uuid.uuid4().hex


class Invoker:
    """Makes unary calls with one request id across attempts and a deadline over all of them."""

    def __init__(self, credentials: Credentials, retry: RetryPolicy, timeout: float) -> None:
        self.credentials = credentials
        self.retry = retry
        self.timeout = timeout

    def metadata(self, request_id: str) -> list[tuple[str, str]]:
        """The call's metadata: its request id and the credentials' headers."""
        return [(REQUEST_ID_HEADER, request_id), *self.credentials.metadata()]

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Any, Resp],
        request: Message,
        *,
        idempotent: bool,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Resp:
        """Call ``method``; retry per the policy until ``timeout`` (the whole call's budget) runs out.

        Raises the decoded :class:`~agentgw_client.errors.AgentGwError` of the last attempt, chained
        to grpc's ``AioRpcError``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        rid = request_id or new_request_id()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline spent", request_id=rid)
            try:
                response: Resp = await method(request, timeout=remaining, metadata=self.metadata(rid))
                return response
            except grpc.aio.AioRpcError as exc:
                error: AgentGwError = from_rpc_error(exc)
                cause = exc
            wait = self.retry.delay(error, attempt, idempotent=idempotent)
            if wait is None or loop.time() + wait >= deadline:
                raise error from cause
            await asyncio.sleep(wait)
