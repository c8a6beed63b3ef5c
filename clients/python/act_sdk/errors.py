"""Exceptions of the ACT SDK.

A deny is a value (a falsy :class:`~act_sdk.Decision`), never an exception. An
:class:`ACTError` means *no decision could be had*: the sidecar could not be
reached, did not answer in time, or refused the request. The SDK never turns one
into an allow; treat it as a deny.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .types import Decision

__all__ = [
    "ACTError",
    "ACTUnavailableError",
    "ACTTimeoutError",
    "ACTInvalidArgumentError",
    "ACTConfigurationError",
    "ACTAuthenticationError",
    "ACTForbiddenError",
    "ACTNotFoundError",
    "ACTUnimplementedError",
    "ACTProtocolError",
    "ACTDeniedError",
]


class ACTError(Exception):
    """No decision: base class of every fault the SDK raises.

    ``code`` is the gRPC status name when the server answered with one
    (``"UNAVAILABLE"``, ``"INVALID_ARGUMENT"``, ...), else ``None``.
    """

    def __init__(self, message: str, *, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code


class ACTUnavailableError(ACTError):
    """The sidecar could not be reached, or answered UNAVAILABLE (e.g. its audit
    spool is full), after the client's bounded retries."""


class ACTTimeoutError(ACTUnavailableError):
    """No answer within the call's deadline (gRPC DEADLINE_EXCEEDED)."""


class ACTInvalidArgumentError(ACTError, ValueError):
    """The request is not well-formed: rejected by the sidecar (INVALID_ARGUMENT,
    e.g. an action over 256 bytes or a context over 16 KiB) or, for values JSON
    cannot carry, by the SDK before any call."""


class ACTConfigurationError(ACTError, ValueError):
    """The client is not usable as configured (no token, a bad address)."""


class ACTAuthenticationError(ACTError):
    """UNAUTHENTICATED: the credential was missing or wrong (central enforcement
    at the control plane needs a bearer; the sidecar does not)."""


class ACTForbiddenError(ACTError):
    """PERMISSION_DENIED: the credential may not call this API at all. Not a
    deny decision (that is a falsy Decision)."""


class ACTNotFoundError(ACTError):
    """NOT_FOUND, e.g. an approval id the server does not know."""


class ACTUnimplementedError(ACTError):
    """UNIMPLEMENTED: the server does not offer this call (an older sidecar)."""


class ACTProtocolError(ACTError):
    """The server's answer does not make sense (for another action, or a stream
    that ended without a message)."""


class ACTDeniedError(PermissionError):
    """Raised by :func:`act_sdk.require` when a tool's check is not allowed.

    A :class:`PermissionError` whose message is the decision's reason; the whole
    decision (``reason_code``, ``approval_id``, ``details``) is in ``.decision``.
    """

    def __init__(self, decision: "Decision") -> None:
        super().__init__(decision.reason or f"{decision.action}: {decision.reason_code}")
        self.decision = decision

    @property
    def reason_code(self) -> str:
        return self.decision.reason_code

    @property
    def approval_id(self) -> Optional[str]:
        return self.decision.approval_id
