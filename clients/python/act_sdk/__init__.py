"""ACT (Agent Capability Tokens) SDK for Python: ask the sidecar "may I?" before every action.

::

    from act_sdk import ACTClient
    act = ACTClient(token="act_...")
    if act.check_permission("read:customer_profile", resource="customer_123"):
        ...
"""

from .client import ACTClient, DEFAULT_ADDRESS, __version__
from .decorators import require
from .errors import (
    ACTAuthenticationError,
    ACTConfigurationError,
    ACTDeniedError,
    ACTError,
    ACTForbiddenError,
    ACTInvalidArgumentError,
    ACTNotFoundError,
    ACTProtocolError,
    ACTTimeoutError,
    ACTUnavailableError,
    ACTUnimplementedError,
)
from .types import ApprovalUpdate, Decision, DecisionDetails

__all__ = [
    "ACTClient",
    "DEFAULT_ADDRESS",
    "Decision",
    "DecisionDetails",
    "ApprovalUpdate",
    "require",
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
    "__version__",
]
