"""``@require``: an ACT check in front of an agent tool."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar, Union

from .client import ACTClient
from .errors import ACTDeniedError

__all__ = ["require"]

F = TypeVar("F")

_default: Optional[ACTClient] = None
_default_lock = threading.Lock()


def _default_client() -> ACTClient:
    """The client `require` uses without ``client=``: made on first use from ACT_TOKEN and ACT_SIDECAR_GRPC_ADDR."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ACTClient()
        return _default


def require(
    action: str,
    resource: Union[None, str, Callable[..., Optional[str]]] = None,
    *,
    resource_arg: Optional[str] = None,
    context: Union[None, Mapping, Callable[..., Optional[Mapping]]] = None,
    client: Union[None, ACTClient, Callable[[], ACTClient]] = None,
) -> Callable[[F], F]:
    """Checks ``action`` with ACT before every call of the decorated tool.

    Allowed: the tool runs. Denied (or approval required): :class:`~act_sdk.ACTDeniedError`,
    a :class:`PermissionError` whose message is the decision's reason, and the tool does not
    run. No decision (sidecar unreachable, bad context): the :class:`~act_sdk.ACTError` propagates
    and the tool does not run.

    ::

        @require("read:customer_profile", resource_arg="customer_id")
        def fetch_customer_profile(customer_id: str) -> dict: ...

        @tool                                   # LangChain: @tool outermost
        @require("create:support_ticket", resource="ticket_system")
        def create_support_ticket(summary: str) -> str: ...

    :param action: the capability the tool exercises.
    :param resource: a fixed resource, or a callable given the tool's arguments
        (exactly as the tool receives them) that returns it.
    :param resource_arg: the name of the tool's parameter that holds the resource
        (instead of ``resource``).
    :param context: a dict, or a callable given the tool's arguments that returns one.
    :param client: an :class:`ACTClient`, or a function returning one; default: one
        client made from the environment on first use.

    Works on plain and ``async`` functions and methods (the tool's name, docstring and
    signature are kept, so LangChain's ``@tool`` still sees its arguments), and on classes
    with ``_run``/``_arun`` (LangChain ``BaseTool`` subclasses): both are wrapped.
    """
    if not isinstance(action, str) or action == "":
        raise TypeError("require() needs an action str such as \"read:customer_profile\"")
    if resource is not None and resource_arg is not None:
        raise TypeError("pass resource or resource_arg, not both")
    if resource is not None and not (isinstance(resource, str) or callable(resource)):
        raise TypeError("resource must be a str or a callable")
    if context is not None and not (isinstance(context, Mapping) or callable(context)):
        raise TypeError("context must be a dict or a callable")
    if client is not None and not (isinstance(client, ACTClient) or callable(client)):
        raise TypeError("client must be an ACTClient or a callable returning one")

    def get_client() -> ACTClient:
        if client is None:
            return _default_client()
        if isinstance(client, ACTClient):
            return client
        c = client()
        if not isinstance(c, ACTClient):
            raise TypeError(f"client() returned {type(c).__name__}, not an ACTClient")
        return c

    def decorate(target: Any) -> Any:
        if inspect.isclass(target):
            wrapped_any = False
            for name in ("_run", "_arun"):
                method = target.__dict__.get(name)
                if method is not None:
                    setattr(target, name, decorate(method))
                    wrapped_any = True
            if not wrapped_any:
                raise TypeError(f"{target.__name__} has no _run or _arun to guard")
            return target
        if not callable(target):
            raise TypeError(f"@require decorates functions and tool classes, not {type(target).__name__}")

        signature = inspect.signature(target)
        if resource_arg is not None and resource_arg not in signature.parameters:
            raise TypeError(f"{target.__name__} has no parameter {resource_arg!r} (resource_arg)")

        def check(args: tuple, kwargs: dict) -> None:
            if resource_arg is not None:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                res = bound.arguments.get(resource_arg)
                if isinstance(res, int) and not isinstance(res, bool):
                    res = str(res)
            elif callable(resource):
                res = resource(*args, **kwargs)
            else:
                res = resource
            ctx = context(*args, **kwargs) if callable(context) else context
            decision = get_client().check_permission(action, resource=res, context=ctx)
            if not decision:
                raise ACTDeniedError(decision)

        if asyncio.iscoroutinefunction(target):

            @functools.wraps(target)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                # The check blocks on gRPC: keep the event loop free while it runs.
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, check, args, kwargs)
                return await target(*args, **kwargs)

            guarded_async.__act_action__ = action  # type: ignore[attr-defined]
            return guarded_async

        @functools.wraps(target)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return target(*args, **kwargs)

        guarded.__act_action__ = action  # type: ignore[attr-defined]
        return guarded

    return decorate
