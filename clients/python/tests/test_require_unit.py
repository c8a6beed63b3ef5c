"""@require against a scripted gRPC server: the tool runs only when allowed; a deny
raises PermissionError with the reason; no decision raises and the tool does not run;
plain, async, method and LangChain-style tools keep their name, docs and signature."""

from __future__ import annotations

import asyncio
import inspect
import os
import unittest
from typing import Any, Callable, Dict
from unittest import mock

from google.protobuf import json_format

import act_sdk.decorators
from act_sdk import ACTClient, ACTDeniedError, ACTUnavailableError, require
from act_sdk._proto import decision_pb2 as pb
from fake_sidecar import FakeSidecar, allow, deny

TOKEN = "act_unit.test-token-not-real"


def langchain_style_tool(func: Callable[..., Any]) -> "MiniTool":
    """What langchain_core.tools.tool does with a function, in small: it reads the name,
    the docstring and the parameters (inspect.signature) and calls the function on invoke."""
    return MiniTool(func)


class MiniTool:
    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.name = func.__name__
        self.description = inspect.getdoc(func) or ""
        self.args = list(inspect.signature(func).parameters)

    def invoke(self, tool_input: Dict[str, Any]) -> Any:
        return self.func(**tool_input)


class BaseToolLike:
    """LangChain's BaseTool in small: invoke() calls _run with the tool's arguments."""

    def invoke(self, tool_input: Dict[str, Any]) -> Any:
        return self._run(**tool_input)

    async def ainvoke(self, tool_input: Dict[str, Any]) -> Any:
        return await self._arun(**tool_input)


class RequireTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeSidecar()
        self.addCleanup(self.fake.stop)
        self.act = ACTClient(token=TOKEN, address=self.fake.address)
        self.addCleanup(self.act.close)
        self.ran = []

    def allow_what_is_asked(self) -> None:
        self.fake.script(lambda req: allow(req.action))

    def deny_what_is_asked(self) -> None:
        self.fake.script(lambda req: deny(req.action))


class PlainFunctions(RequireTestCase):
    def test_allowed_runs_the_tool_with_the_resource_from_its_argument(self) -> None:
        self.allow_what_is_asked()

        @require("read:customer_profile", resource_arg="customer_id", client=self.act)
        def fetch_customer_profile(customer_id: str, fields: str = "all") -> dict:
            """Fetches a customer's profile."""
            self.ran.append(customer_id)
            return {"id": customer_id}

        self.assertEqual(fetch_customer_profile("customer_123"), {"id": "customer_123"})
        self.assertEqual(fetch_customer_profile(customer_id="customer_456", fields="name"), {"id": "customer_456"})
        self.assertEqual(self.ran, ["customer_123", "customer_456"])
        self.assertEqual([(r.action, r.resource) for r in self.fake.requests],
                         [("read:customer_profile", "customer_123"), ("read:customer_profile", "customer_456")])
        self.assertEqual(fetch_customer_profile.__name__, "fetch_customer_profile")
        self.assertEqual(fetch_customer_profile.__doc__, "Fetches a customer's profile.")
        self.assertEqual(list(inspect.signature(fetch_customer_profile).parameters), ["customer_id", "fields"])

    def test_denied_raises_permission_error_with_the_reason_and_does_not_run(self) -> None:
        self.deny_what_is_asked()

        @require("delete:customer_account", resource="customer_123", client=self.act)
        def delete_account() -> None:
            self.ran.append("deleted")

        with self.assertRaises(PermissionError) as cm:
            delete_account()
        self.assertEqual(self.ran, [])
        self.assertEqual(str(cm.exception), "Capability not granted in token")
        self.assertIsInstance(cm.exception, ACTDeniedError)
        self.assertEqual(cm.exception.reason_code, "CAPABILITY_NOT_GRANTED")
        self.assertEqual(cm.exception.decision.details.missing_capability, "delete:customer_account")

    def test_approval_required_does_not_run_and_carries_the_approval(self) -> None:
        self.fake.script(
            deny("create:transaction", decision=pb.APPROVAL_REQUIRED, reason_code=pb.APPROVAL_REQUIRED_BY_POLICY,
                 reason="Human approval required", approval_id="approval_7")
        )

        @require("create:transaction", context=lambda amount: {"amount": amount}, client=self.act)
        def pay(amount: int) -> None:
            self.ran.append(amount)

        with self.assertRaises(ACTDeniedError) as cm:
            pay(5000)
        self.assertEqual(self.ran, [])
        self.assertEqual(cm.exception.approval_id, "approval_7")
        self.assertEqual(json_format.MessageToDict(self.fake.requests[0].context), {"amount": 5000.0})

    def test_an_answer_that_is_not_allowed_never_runs_the_tool(self) -> None:
        self.fake.script(allow("read:customer_profile", decision=pb.DECISION_UNSPECIFIED))

        @require("read:customer_profile", client=self.act)
        def tool() -> None:
            self.ran.append(1)

        with self.assertRaises(ACTDeniedError):
            tool()
        self.assertEqual(self.ran, [])

    def test_no_decision_raises_and_does_not_run(self) -> None:
        dead = FakeSidecar()
        address = dead.address
        dead.stop()
        client = ACTClient(token=TOKEN, address=address)
        self.addCleanup(client.close)

        @require("read:customer_profile", client=client)
        def tool() -> None:
            self.ran.append(1)

        with self.assertRaises(ACTUnavailableError):
            tool()
        self.assertEqual(self.ran, [])

    def test_a_bad_context_raises_before_any_call_and_does_not_run(self) -> None:
        @require("read:customer_profile", context=lambda: ["not", "a", "dict"], client=self.act)
        def tool() -> None:
            self.ran.append(1)

        with self.assertRaises(TypeError):
            tool()
        self.assertEqual((self.ran, self.fake.calls), ([], 0))

    def test_resource_callable_and_int_resource_arg(self) -> None:
        self.allow_what_is_asked()

        @require("read:order_history", resource=lambda order_id, **_: f"order_{order_id}", client=self.act)
        def orders(order_id: int, verbose: bool = False) -> int:
            return order_id

        @require("read:order_history", resource_arg="order_id", client=self.act)
        def orders2(order_id: int) -> int:
            return order_id

        self.assertEqual(orders(7, verbose=True), 7)
        self.assertEqual(orders2(8), 8)
        self.assertEqual([r.resource for r in self.fake.requests], ["order_7", "8"])

    def test_client_factory_and_default_client_from_the_environment(self) -> None:
        self.allow_what_is_asked()

        @require("read:customer_profile", client=lambda: self.act)
        def a() -> str:
            return "a"

        self.assertEqual(a(), "a")
        env = {"ACT_TOKEN": "act_from.env", "ACT_SIDECAR_GRPC_ADDR": self.fake.address}
        with mock.patch.dict(os.environ, env), mock.patch.object(act_sdk.decorators, "_default", None):

            @require("read:customer_profile")
            def b() -> str:
                return "b"

            self.assertEqual(b(), "b")
            act_sdk.decorators._default.close()
        self.assertEqual([r.token for r in self.fake.requests], [TOKEN, "act_from.env"])

    def test_misuse_is_refused_when_decorating(self) -> None:
        with self.assertRaises(TypeError):
            require(123)  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            require("read:x", resource="r", resource_arg="r")
        with self.assertRaises(TypeError):

            @require("read:x", resource_arg="missing", client=self.act)
            def f(customer_id: str) -> None: ...

        with self.assertRaises(TypeError):

            @require("read:x", client=self.act)
            class NoRun:
                pass


class AsyncAndMethods(RequireTestCase):
    def test_async_tool(self) -> None:
        self.fake.script(lambda req: allow(req.action) if req.resource == "ok" else deny(req.action))

        @require("read:customer_profile", resource_arg="customer_id", client=self.act)
        async def fetch(customer_id: str) -> str:
            self.ran.append(customer_id)
            return customer_id

        self.assertTrue(asyncio.iscoroutinefunction(fetch))
        self.assertEqual(asyncio.run(fetch("ok")), "ok")
        with self.assertRaises(ACTDeniedError):
            asyncio.run(fetch("no"))
        self.assertEqual(self.ran, ["ok"])

    def test_method(self) -> None:
        self.allow_what_is_asked()
        test = self

        class Agent:
            @require("create:support_ticket", resource="ticket_system", client=test.act)
            def open_ticket(self, summary: str) -> str:
                return f"ticket: {summary}"

        self.assertEqual(Agent().open_ticket("printer on fire"), "ticket: printer on fire")
        self.assertEqual(self.fake.requests[0].resource, "ticket_system")


class LangChainStyleTools(RequireTestCase):
    def test_tool_decorator_outermost_keeps_name_docs_and_arguments(self) -> None:
        self.fake.script(lambda req: allow(req.action) if req.resource == "customer_123" else deny(req.action))

        @langchain_style_tool
        @require("read:customer_profile", resource_arg="customer_id", client=self.act)
        def fetch_customer_profile(customer_id: str) -> dict:
            """Look up a customer's profile by id."""
            self.ran.append(customer_id)
            return {"id": customer_id, "tier": "gold"}

        self.assertEqual(fetch_customer_profile.name, "fetch_customer_profile")
        self.assertEqual(fetch_customer_profile.description, "Look up a customer's profile by id.")
        self.assertEqual(fetch_customer_profile.args, ["customer_id"])
        self.assertEqual(fetch_customer_profile.invoke({"customer_id": "customer_123"})["tier"], "gold")
        with self.assertRaises(PermissionError):
            fetch_customer_profile.invoke({"customer_id": "customer_999"})
        self.assertEqual(self.ran, ["customer_123"])

    def test_base_tool_subclass_guards_run_and_arun(self) -> None:
        self.fake.script(lambda req: allow(req.action) if req.resource == "ok" else deny(req.action))
        ran = self.ran

        @require("read:customer_profile", resource_arg="customer_id", client=self.act)
        class FetchProfile(BaseToolLike):
            name = "fetch_profile"

            def _run(self, customer_id: str) -> str:
                ran.append(("run", customer_id))
                return customer_id

            async def _arun(self, customer_id: str) -> str:
                ran.append(("arun", customer_id))
                return customer_id

        tool = FetchProfile()
        self.assertEqual(tool.invoke({"customer_id": "ok"}), "ok")
        self.assertEqual(asyncio.run(tool.ainvoke({"customer_id": "ok"})), "ok")
        with self.assertRaises(PermissionError):
            tool.invoke({"customer_id": "no"})
        with self.assertRaises(PermissionError):
            asyncio.run(tool.ainvoke({"customer_id": "no"}))
        self.assertEqual(ran, [("run", "ok"), ("arun", "ok")])
        self.assertEqual(self.fake.calls, 4)


if __name__ == "__main__":
    unittest.main()

