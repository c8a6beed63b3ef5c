"""ACTClient: asks the pod-local sidecar "may I?" over gRPC (act.v1.DecisionService)."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Optional

import grpc
from google.protobuf import struct_pb2

from . import errors
from ._proto import decision_pb2 as pb
from ._proto import decision_pb2_grpc as pb_grpc
from .types import ApprovalUpdate, Decision

__all__ = ["ACTClient", "DEFAULT_ADDRESS", "__version__"]

__version__ = "0.1.0"

#: Where the sidecar listens unless ACT_SIDECAR_GRPC_ADDR says otherwise.
DEFAULT_ADDRESS = "127.0.0.1:8711"

# Limits of WaitForApprovalRequest.timeout_ms (decision.proto).
_MAX_WAIT_S = 900.0
# Extra time the wait's gRPC deadline allows beyond the server-side wait, so the
# server's final "still PENDING" message arrives before the deadline cuts the stream.
_WAIT_GRACE_S = 5.0
# Deeper contexts are refused by the server too (and a cycle would recurse forever).
_MAX_DEPTH = 32
# Numbers travel as doubles: larger integers would arrive changed.
_MAX_SAFE_INT = 2**53

_ERRORS = {
    grpc.StatusCode.UNAVAILABLE: errors.ACTUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.ACTTimeoutError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.ACTInvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: errors.ACTInvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: errors.ACTAuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: errors.ACTForbiddenError,
    grpc.StatusCode.NOT_FOUND: errors.ACTNotFoundError,
    grpc.StatusCode.UNIMPLEMENTED: errors.ACTUnimplementedError,
}


def _default_address() -> str:
    # ACT_SIDECAR_GRPC_ADDR may list several addresses (the sidecar's own setting): use the first.
    env = os.environ.get("ACT_SIDECAR_GRPC_ADDR", "")
    first = env.split(",")[0].strip()
    return first or DEFAULT_ADDRESS


def _positive_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return float(value)


def _json_value(v: Any, path: str, depth: int) -> Any:
    """A plain-JSON copy of one context value; TypeError/ValueError for what JSON cannot carry."""
    if depth > _MAX_DEPTH:
        raise errors.ACTInvalidArgumentError(
            f"context is nested more than {_MAX_DEPTH} levels deep (or refers to itself) at {path}"
        )
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        if abs(v) > _MAX_SAFE_INT:
            raise errors.ACTInvalidArgumentError(
                f"{path} = {v} is beyond ±2**53 and would change on the way (numbers travel as doubles)"
            )
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise errors.ACTInvalidArgumentError(f"{path} must be a finite number (JSON has no NaN or Infinity)")
        return 0.0 if v == 0 else v  # -0.0 and 0.0 are one JSON value
    if isinstance(v, Mapping):
        out = {}
        for k, item in v.items():
            if not isinstance(k, str):
                raise TypeError(f"{path} has a {type(k).__name__} key {k!r}; context keys must be str")
            out[k] = _json_value(item, f"{path}.{k}", depth + 1)
        return out
    if isinstance(v, (list, tuple)):
        return [_json_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(v)]
    raise TypeError(
        f"{path} is a {type(v).__name__}; context values must be str, int, float, bool, None, "
        "dict or list (convert it first, e.g. str(value) or value.isoformat())"
    )


def _context_struct(context: Optional[Mapping]) -> Optional[struct_pb2.Struct]:
    if context is None:
        return None
    if not isinstance(context, Mapping):
        raise TypeError(f"context must be a dict, not {type(context).__name__}")
    s = struct_pb2.Struct()
    s.update(_json_value(context, "context", 0))
    return s


def _optional_str(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


class ACTClient:
    """A client of the ACT sidecar's decision API (gRPC ``act.v1.DecisionService``).

    ::

        from act_sdk import ACTClient
        act = ACTClient(token="act_...")          # or ACT_TOKEN from the environment
        if act.check_permission("read:customer_profile", resource="customer_123"):
            ...

    One channel is opened per client and reused by every call (share one client
    across threads). A deny is a falsy :class:`Decision`; anything that prevents a
    decision raises an :class:`~act_sdk.ACTError` — never a truthy answer.

    :param token: the agent's ACT token; default: ``ACT_TOKEN``.
    :param address: ``host:port`` or ``unix:/path``; default: the first of
        ``ACT_SIDECAR_GRPC_ADDR``, else ``127.0.0.1:8711``.
    :param timeout: seconds each call may take in all, retries included (default 2).
    :param max_retries: extra attempts after an UNAVAILABLE answer (default 2); no
        other failure is retried.
    :param authorization: the ``authorization`` metadata (default ``Bearer <token>``;
        the sidecar ignores it, the control plane's central enforcement needs it).
    :param credentials: ``grpc.ChannelCredentials`` for TLS (default: plaintext,
        for the pod-local sidecar).
    """

    def __init__(
        self,
        token: Optional[str] = None,
        address: Optional[str] = None,
        *,
        timeout: float = 2.0,
        max_retries: int = 2,
        authorization: Optional[str] = None,
        credentials: Optional[grpc.ChannelCredentials] = None,
    ) -> None:
        if token is None:
            token = os.environ.get("ACT_TOKEN")
        if token is None or token == "":
            raise errors.ACTConfigurationError(
                "no ACT token: pass ACTClient(token=...) or set ACT_TOKEN (the \"act_...\" string from POST /api/tokens)"
            )
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, not {type(token).__name__}")
        if address is None:
            address = _default_address()
        if not isinstance(address, str):
            raise TypeError(f"address must be a str, not {type(address).__name__}")
        if address.strip() == "":
            raise errors.ACTConfigurationError("address is empty: use host:port or unix:/path")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 10:
            raise ValueError("max_retries must be an int from 0 to 10")
        if authorization is not None and not isinstance(authorization, str):
            raise TypeError("authorization must be a str")
        self._token = token
        self._address = address
        self._timeout = _positive_seconds(timeout, "timeout")
        self._max_retries = max_retries
        self._metadata = (("authorization", authorization or f"Bearer {token}"),)
        options = [
            ("grpc.primary_user_agent", f"act-sdk-python/{__version__}"),
            # The sidecar is local: come back fast after it restarts (the default backoff starts at 1 s).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub = pb_grpc.DecisionServiceStub(self._channel)
        self._closed = False
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        """The sidecar address this client talks to."""
        return self._address

    def __repr__(self) -> str:  # never the token
        return f"ACTClient(address={self._address!r})"

    # ---- checks ----

    def check_permission(
        self,
        action: str,
        resource: Optional[str] = None,
        context: Optional[Mapping] = None,
        *,
        approval_id: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Decision:
        """Asks whether this client's token may perform ``action`` on ``resource``.

        :param action: the capability, ``"verb:resource_type"``, e.g. ``"read:customer_profile"``.
        :param resource: the resource acted on, e.g. ``"customer_123"`` (optional).
        :param context: a JSON-like dict for policy conditions and the audit trail.
        :param approval_id: an approval from an earlier APPROVAL_REQUIRED answer,
            presented once a human approved it (exactly the same action, resource and context).
        :param timeout: seconds for this call, retries included (default: the client's).
        :returns: a :class:`Decision`, truthy only when allowed.
        :raises TypeError: for arguments of the wrong type (before any call).
        :raises ACTError: when no decision could be had (see :mod:`act_sdk.errors`).
        """
        if not isinstance(action, str):
            raise TypeError(f"action must be a str such as \"read:customer_profile\", not {type(action).__name__}")
        if action == "":
            raise errors.ACTInvalidArgumentError("action is required, e.g. \"read:customer_profile\"")
        request = pb.CheckPermissionRequest(
            token=self._token,
            action=action,
            resource=_optional_str(resource, "resource"),
            approval_id=_optional_str(approval_id, "approval_id"),
        )
        struct = _context_struct(context)
        if struct is not None:
            request.context.CopyFrom(struct)
        budget = self._timeout if timeout is None else _positive_seconds(timeout, "timeout")
        response = self._unary(self._stub.CheckPermission, request, budget)
        if response.action and response.action != action:
            raise errors.ACTProtocolError(
                f"the sidecar answered for {response.action!r}, not {action!r}; no decision"
            )
        return Decision._from_pb(response)

    # ---- approvals ----

    def watch_approval(self, approval_id: str, timeout: float = 60.0) -> Iterator[ApprovalUpdate]:
        """Yields the states of an approval as they change (WaitForApproval): the
        current state first, then every change, until it is decided or ``timeout``
        seconds (at most 900) pass. A lost connection is re-opened (bounded retries)."""
        if not isinstance(approval_id, str):
            raise TypeError(f"approval_id must be a str, not {type(approval_id).__name__}")
        if approval_id == "":
            raise errors.ACTInvalidArgumentError("approval_id is required (\"approval_...\" from an APPROVAL_REQUIRED decision)")
        wait = _positive_seconds(timeout, "timeout")
        if wait > _MAX_WAIT_S:
            raise ValueError(f"timeout must be at most {_MAX_WAIT_S:.0f} seconds")
        self._check_open()
        return self._watch(approval_id, wait)

    def _watch(self, approval_id: str, wait: float) -> Iterator[ApprovalUpdate]:
        deadline = time.monotonic() + wait
        last: Optional[ApprovalUpdate] = None
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            request = pb.WaitForApprovalRequest(
                approval_id=approval_id,
                token=self._token,
                timeout_ms=max(1, int(remaining * 1000)),
            )
            stream = self._stub.WaitForApproval(
                request, timeout=max(remaining, 0.001) + _WAIT_GRACE_S, metadata=self._metadata
            )
            try:
                for message in stream:
                    update = ApprovalUpdate._from_pb(message)
                    if update.approval_id and update.approval_id != approval_id:
                        raise errors.ACTProtocolError(
                            f"the server streamed {update.approval_id!r}, not {approval_id!r}"
                        )
                    if update != last:  # a re-opened stream repeats the current state first
                        yield update
                    last = update
                    if update.decided:
                        return
                if last is None:
                    raise errors.ACTProtocolError("WaitForApproval ended without a message")
                return  # the wait's deadline passed: the last message said PENDING
            except grpc.RpcError as err:
                if (
                    err.code() == grpc.StatusCode.UNAVAILABLE
                    and attempt < self._max_retries
                    and self._pause(attempt, deadline)
                ):
                    attempt += 1
                    continue
                raise self._error(err) from None
            finally:
                stream.cancel()

    def wait_for_approval(
        self,
        approval_id: str,
        timeout: float = 60.0,
        on_update: Optional[Callable[[ApprovalUpdate], None]] = None,
    ) -> ApprovalUpdate:
        """Waits until a human decides an approval (or ``timeout`` seconds, at most
        900, pass) and returns its last state. ``update.approved`` is True when it
        was approved: then repeat the same check with ``approval_id=`` (allowed
        once). A still-PENDING answer means the wait timed out.

        :param on_update: called with every state on the way (e.g. to log progress).
        """
        last: Optional[ApprovalUpdate] = None
        for update in self.watch_approval(approval_id, timeout):
            last = update
            if on_update is not None:
                on_update(update)
        assert last is not None  # _watch raises ACTProtocolError on an empty stream
        return last

    # ---- plumbing ----

    def _unary(self, method, request, budget: float):
        self._check_open()
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.ACTTimeoutError(
                    f"no answer from the ACT sidecar at {self._address} within {budget:g} s", code="DEADLINE_EXCEEDED"
                )
            try:
                return method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as err:
                if (
                    err.code() == grpc.StatusCode.UNAVAILABLE
                    and attempt < self._max_retries
                    and self._pause(attempt, deadline)
                ):
                    attempt += 1
                    continue
                raise self._error(err) from None

    @staticmethod
    def _pause(attempt: int, deadline: float) -> bool:
        """Sleeps before retry `attempt` (full jitter, 50 ms doubling, 1 s cap); False when the deadline is too near."""
        delay = random.uniform(0, min(1.0, 0.05 * 2**attempt))
        if time.monotonic() + delay >= deadline:
            return False
        time.sleep(delay)
        return True

    def _error(self, err: grpc.RpcError) -> errors.ACTError:
        code = err.code()
        cls = _ERRORS.get(code, errors.ACTError)
        details = err.details() or code.name
        if code == grpc.StatusCode.UNAVAILABLE:
            message = f"ACT sidecar at {self._address} unavailable: {details}"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = f"no answer from the ACT sidecar at {self._address} in time: {details}"
        else:
            message = f"{code.name}: {details}"
        return cls(message, code=code.name)

    def _check_open(self) -> None:
        if self._closed:
            raise errors.ACTError("this ACTClient is closed")

    def close(self) -> None:
        """Closes the channel; later calls raise ACTError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._channel.close()

    def __enter__(self) -> "ACTClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
