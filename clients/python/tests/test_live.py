"""act_sdk against a live sidecar and control plane, started by
test/integration/sdk-python.test.ts (npm test), which passes their addresses and
tokens in the environment. Without that environment this module fails (it is not
skipped): run it through `npm test` or `npx mocha test/integration/sdk-python.test.ts`.

What it proves: the description's check works as written (truthy when allowed,
falsy when denied) and is audited upstream with its context; unix sockets; a
revoked, forged or malformed token is a deny; bad input raises and never decides;
an unreachable sidecar raises; presenting an approval (approval_id=) allows exactly
once; the decorator; one client shared by threads."""

from __future__ import annotations

import unittest
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from act_sdk import ACTClient, ACTDeniedError, ACTInvalidArgumentError, ACTUnavailableError, require
from live_support import E, admin, approval_at_control_plane, audit_record, load_env, wait_until


def setUpModule() -> None:  # noqa: N802
    load_env()


class LiveTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.act = ACTClient()  # ACT_TOKEN and ACT_SIDECAR_GRPC_ADDR from the environment
        self.addCleanup(self.act.close)


class TheDescriptionsCheck(LiveTestCase):
    def test_allowed_is_truthy_and_audited_with_its_context(self) -> None:
        ctx = {"ip": "10.0.1.50", "reason": "User inquiry about order status"}
        decision = self.act.check_permission("read:customer_profile", resource="customer_54321", context=ctx)
        if decision:
            took = "allowed"
        else:
            took = "denied"
        self.assertEqual(took, "allowed")
        self.assertEqual((decision.allowed, decision.decision, decision.reason_code), (True, "ALLOW", "GRANTED"))
        self.assertEqual(decision.reason, "Token valid, capability granted")
        self.assertEqual(decision.action, "read:customer_profile")
        self.assertRegex(decision.audit_id, r"^audit_")
        self.assertIsNone(decision.approval_id)
        self.assertGreater(decision.policy_revision, 0)
        self.assertRegex(decision.details.policy_id or "", r"^policy_")
        rec = audit_record(decision.audit_id)
        self.assertEqual((rec["action"], rec["resource"], rec["decision"]), ("read:customer_profile", "customer_54321", "ALLOW"))
        self.assertEqual(rec["context"], ctx)

    def test_denied_is_falsy_with_the_seeds_reason(self) -> None:
        decision = self.act.check_permission("delete:customer_account", resource="customer_54321")
        self.assertFalse(decision)
        self.assertEqual((decision.decision, decision.reason_code), ("DENY", "CAPABILITY_NOT_GRANTED"))
        self.assertEqual(decision.reason, "Capability not granted in token")
        self.assertEqual(decision.details.missing_capability, "delete:customer_account")
        self.assertEqual(audit_record(decision.audit_id)["decision"], "DENY")

    def test_unix_socket(self) -> None:
        with ACTClient(address=E["ACT_TEST_UNIX_ADDR"]) as act:
            self.assertTrue(act.check_permission("read:customer_profile", resource="customer_1"))
            self.assertFalse(act.check_permission("delete:customer_account"))

    def test_context_of_every_json_type_arrives_as_sent(self) -> None:
        ctx = {"s": "x", "i": 1200, "f": 0.25, "t": True, "n": None, "l": [1, "two", {"three": 3}], "o": {"p": {"q": []}}}
        decision = self.act.check_permission("read:order_history", resource="order_1", context=ctx)
        self.assertTrue(decision)
        self.assertEqual(audit_record(decision.audit_id)["context"], ctx)

    def test_a_token_without_the_capability_is_denied(self) -> None:
        with ACTClient(token=E["ACT_TEST_TICKETS_ONLY_TOKEN"]) as act:
            self.assertFalse(act.check_permission("read:customer_profile", resource="customer_123"))
            self.assertTrue(act.check_permission("create:support_ticket", resource="ticket_system"))


class NeverAllowedOnAFault(LiveTestCase):
    def test_malformed_and_forged_tokens_are_denies(self) -> None:
        forged = E["ACT_TOKEN"][:-4] + ("AAAA" if not E["ACT_TOKEN"].endswith("AAAA") else "BBBB")
        for token, code in (("act_1a2b3c4d5e6f...", "MALFORMED_TOKEN"), (forged, "BAD_SIGNATURE")):
            with self.subTest(code=code), ACTClient(token=token) as act:
                d = act.check_permission("read:customer_profile", resource="customer_123")
                self.assertFalse(d)
                self.assertEqual(d.reason_code, code)

    def test_requests_the_sidecar_refuses_raise_invalid_argument(self) -> None:
        cases = {
            "action over 256": dict(action="read:" + "x" * 300),
            "resource over 1 KiB": dict(action="read:customer_profile", resource="c" * 2000),
            "context over 16 KiB": dict(action="read:customer_profile", context={"blob": "x" * 20000}),
            "approval id over 80": dict(action="read:customer_profile", approval_id="approval_" + "x" * 100),
        }
        for name, kwargs in cases.items():
            with self.subTest(name):
                with self.assertRaises(ACTInvalidArgumentError):
                    self.act.check_permission(**kwargs)

    def test_wrong_argument_types_raise_type_error(self) -> None:
        for args, kwargs in (
            ((123,), {}),
            ((None,), {}),
            (("read:customer_profile",), {"context": ["not", "a", "dict"]}),
            (("read:customer_profile",), {"context": "ip=10.0.1.50"}),
            (("read:customer_profile",), {"resource": 54321}),
        ):
            with self.subTest(args=args, kwargs=kwargs):
                with self.assertRaises(TypeError):
                    self.act.check_permission(*args, **kwargs)

    def test_an_unreachable_sidecar_raises(self) -> None:
        for address in (E["ACT_TEST_CLOSED_ADDR"], "unix:/nonexistent/act-sidecar.sock"):
            with self.subTest(address=address), ACTClient(address=address) as act:
                with self.assertRaises(ACTUnavailableError):
                    act.check_permission("read:customer_profile", resource="customer_123")

    def test_a_revoked_token_is_denied_once_the_revocation_arrives(self) -> None:
        with ACTClient(token=E["ACT_TEST_REVOCABLE_TOKEN"]) as act:
            self.assertTrue(act.check_permission("read:customer_profile"))
            status, body = admin("POST", f"/api/tokens/{E['ACT_TEST_REVOCABLE_TOKEN_ID']}/revoke", {"reason": "sdk test"})
            self.assertEqual(status, 200, body)

            def revoked() -> Optional[Any]:
                d = act.check_permission("read:customer_profile")
                return d if d.reason_code == "TOKEN_REVOKED" else None

            d = wait_until("TOKEN_REVOKED at the sidecar", revoked)
            self.assertFalse(d)


class Approvals(unittest.TestCase):
    def setUp(self) -> None:
        self.act = ACTClient(token=E["ACT_TEST_APPROVAL_TOKEN"])
        self.addCleanup(self.act.close)

    def ask(self, amount: int, approval_id: Optional[str] = None):
        return self.act.check_permission(
            "create:transaction", resource="acct_9", context={"amount": amount}, approval_id=approval_id
        )

    def test_present_an_approval_once_a_human_approved(self) -> None:
        self.assertTrue(self.ask(5))
        pending = self.ask(5000)
        self.assertFalse(pending)
        self.assertEqual((pending.decision, pending.reason_code), ("APPROVAL_REQUIRED", "APPROVAL_REQUIRED_BY_POLICY"))
        self.assertRegex(pending.approval_id or "", r"^approval_")
        self.assertEqual(approval_at_control_plane(pending.approval_id)["status"], "PENDING")
        self.assertFalse(self.ask(5000, pending.approval_id), "not approved yet")
        status, body = admin("POST", f"/api/approvals/{pending.approval_id}/approve", {"comment": "fine"})
        self.assertEqual(status, 200, body)

        def allowed() -> Optional[Any]:
            d = self.ask(5000, pending.approval_id)
            return d if d.decision != "APPROVAL_REQUIRED" else None

        d = wait_until("ALLOW with the approval", allowed)
        self.assertTrue(d)
        again = self.ask(5000, pending.approval_id)
        self.assertFalse(again, "an approval allows once")
        # Another request presenting it is a new request, not the approved one.
        other = self.ask(9000, pending.approval_id)
        self.assertFalse(other)


class Decorator(LiveTestCase):
    def test_require_guards_a_tool(self) -> None:
        ran = []
        tickets_only = ACTClient(token=E["ACT_TEST_TICKETS_ONLY_TOKEN"])
        self.addCleanup(tickets_only.close)
        dead = ACTClient(address=E["ACT_TEST_CLOSED_ADDR"])
        self.addCleanup(dead.close)

        def make(client: ACTClient):
            @require("read:customer_profile", resource_arg="customer_id", client=client)
            def fetch_customer_profile(customer_id: str) -> dict:
                ran.append(customer_id)
                return {"id": customer_id}

            return fetch_customer_profile

        self.assertEqual(make(self.act)("customer_123"), {"id": "customer_123"})
        with self.assertRaises(PermissionError) as cm:
            make(tickets_only)("customer_456")
        self.assertIsInstance(cm.exception, ACTDeniedError)
        self.assertEqual(str(cm.exception), "Capability not granted in token")
        with self.assertRaises(ACTUnavailableError):
            make(dead)("customer_789")
        self.assertEqual(ran, ["customer_123"])


class SharedClient(LiveTestCase):
    def test_threads_share_one_client(self) -> None:
        def check(i: int):
            return self.act.check_permission("read:customer_profile", resource=f"customer_{i}")

        with ThreadPoolExecutor(max_workers=8) as pool:
            decisions = list(pool.map(check, range(80)))
        self.assertTrue(all(decisions))
        self.assertEqual(len({d.audit_id for d in decisions}), 80)


if __name__ == "__main__":
    unittest.main()
