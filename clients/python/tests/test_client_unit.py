"""ACTClient against a scripted gRPC server: argument checks before any call, the
mapping of answers (including ones a correct sidecar never sends) to decisions that
fail closed, typed errors, bounded retries on UNAVAILABLE only, deadlines, one
channel per client, and WaitForApproval's stream."""

from __future__ import annotations

import datetime
import math
import os
import shutil
import tempfile
import threading
import unittest
from unittest import mock

import grpc
from google.protobuf import json_format

import act_sdk
from act_sdk import (
    ACTAuthenticationError,
    ACTClient,
    ACTConfigurationError,
    ACTError,
    ACTForbiddenError,
    ACTInvalidArgumentError,
    ACTNotFoundError,
    ACTProtocolError,
    ACTTimeoutError,
    ACTUnavailableError,
    ACTUnimplementedError,
)
from act_sdk._proto import decision_pb2 as pb
from fake_sidecar import Fail, FakeSidecar, Sleep, allow, deny, update

TOKEN = "act_unit.test-token-not-real"


class ClientTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeSidecar()
        self.addCleanup(self.fake.stop)
        self.act = ACTClient(token=TOKEN, address=self.fake.address)
        self.addCleanup(self.act.close)


class BadArgumentsRaiseBeforeAnyCall(ClientTestCase):
    def assert_no_call(self, exc: type, *args, **kwargs) -> None:
        with self.assertRaises(exc):
            self.act.check_permission(*args, **kwargs)
        self.assertEqual(self.fake.calls, 0, "the bad request reached the server")

    def test_action_that_is_not_a_str_is_a_type_error(self) -> None:
        for action in (None, 123, b"read:customer_profile", ["read:customer_profile"]):
            with self.subTest(action=action):
                self.assert_no_call(TypeError, action)

    def test_empty_action_is_invalid(self) -> None:
        self.assert_no_call(ACTInvalidArgumentError, "")
        self.assertTrue(issubclass(ACTInvalidArgumentError, ValueError))

    def test_resource_and_approval_id_must_be_str(self) -> None:
        self.assert_no_call(TypeError, "read:customer_profile", resource=123)
        self.assert_no_call(TypeError, "read:customer_profile", resource=b"c1")
        self.assert_no_call(TypeError, "read:customer_profile", approval_id=5)

    def test_context_that_is_not_a_dict_is_a_type_error(self) -> None:
        for context in (["ip", "10.0.1.50"], "ip=10.0.1.50", 5, ("a", 1)):
            with self.subTest(context=context):
                self.assert_no_call(TypeError, "read:customer_profile", context=context)

    def test_context_values_json_cannot_carry_are_refused(self) -> None:
        self.assert_no_call(TypeError, "read:customer_profile", context={"when": datetime.datetime.now()})
        self.assert_no_call(TypeError, "read:customer_profile", context={"tags": {"a", "b"}})
        self.assert_no_call(TypeError, "read:customer_profile", context={1: "int key"})
        self.assert_no_call(TypeError, "read:customer_profile", context={"raw": b"\x00"})
        self.assert_no_call(ACTInvalidArgumentError, "read:customer_profile", context={"x": math.nan})
        self.assert_no_call(ACTInvalidArgumentError, "read:customer_profile", context={"x": -math.inf})
        self.assert_no_call(ACTInvalidArgumentError, "read:customer_profile", context={"id": 2**60})

    def test_deep_or_cyclic_context_is_refused(self) -> None:
        deep: dict = {}
        node = deep
        for _ in range(40):
            node["n"] = {}
            node = node["n"]
        self.assert_no_call(ACTInvalidArgumentError, "read:customer_profile", context=deep)
        cyclic: dict = {"a": 1}
        cyclic["self"] = cyclic
        self.assert_no_call(ACTInvalidArgumentError, "read:customer_profile", context=cyclic)

    def test_bad_timeout_is_refused(self) -> None:
        self.assert_no_call(ValueError, "read:customer_profile", timeout=0)
        self.assert_no_call(ValueError, "read:customer_profile", timeout=-1)
        self.assert_no_call(TypeError, "read:customer_profile", timeout="1s")


class RequestsCarryWhatWasAsked(ClientTestCase):
    def test_fields_context_and_bearer(self) -> None:
        ctx = {"ip": "10.0.1.50", "amount": 1200, "ratio": 0.5, "vip": True, "note": None, "tags": ["a", 2], "nested": {"k": "v"}}
        d = self.act.check_permission("read:customer_profile", resource="customer_123", context=ctx, approval_id="approval_1")
        self.assertTrue(d)
        req = self.fake.requests[0]
        self.assertEqual(req.token, TOKEN)
        self.assertEqual(req.action, "read:customer_profile")
        self.assertEqual(req.resource, "customer_123")
        self.assertEqual(req.approval_id, "approval_1")
        self.assertEqual(json_format.MessageToDict(req.context), {**ctx, "amount": 1200.0, "tags": ["a", 2.0]})
        self.assertEqual(self.fake.metadata[0]["authorization"], f"Bearer {TOKEN}")
        self.assertIn("act-sdk-python/", self.fake.metadata[0]["user-agent"])

    def test_no_context_sends_none_and_optional_fields_are_empty(self) -> None:
        self.act.check_permission("read:customer_profile")
        req = self.fake.requests[0]
        self.assertFalse(req.HasField("context"))
        self.assertEqual((req.resource, req.approval_id), ("", ""))

    def test_custom_authorization(self) -> None:
        with ACTClient(token=TOKEN, address=self.fake.address, authorization="Bearer actk_admin") as c:
            c.check_permission("read:customer_profile")
        self.assertEqual(self.fake.metadata[0]["authorization"], "Bearer actk_admin")

    def test_one_channel_for_every_call(self) -> None:
        for _ in range(5):
            self.act.check_permission("read:customer_profile")
        threads = [threading.Thread(target=self.act.check_permission, args=("read:customer_profile",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(self.fake.calls, 9)
        self.assertEqual(len(set(self.fake.peers)), 1, f"calls came over several connections: {set(self.fake.peers)}")


class AnswersBecomeDecisionsThatFailClosed(ClientTestCase):
    def test_allow(self) -> None:
        d = self.act.check_permission("read:customer_profile", resource="customer_123")
        self.assertIs(bool(d), True)
        self.assertEqual(
            (d.allowed, d.decision, d.reason_code, d.reason, d.audit_id, d.approval_id, d.policy_revision),
            (True, "ALLOW", "GRANTED", "Token valid, capability granted", "audit_fake1", None, 7),
        )
        self.assertEqual(d.details.policy_id, "policy_fake")
        self.assertEqual((d.details.remaining_rate, d.details.remaining_daily_budget), (9, 41))

    def test_deny_is_a_falsy_value_not_an_exception(self) -> None:
        self.fake.script(deny("delete:customer_account"))
        d = self.act.check_permission("delete:customer_account")
        self.assertIs(bool(d), False)
        # Budgets the deciding policy does not have are absent, not a sentinel.
        self.assertEqual((d.details.remaining_rate, d.details.remaining_daily_budget), (None, None))
        self.assertEqual((d.decision, d.reason_code), ("DENY", "CAPABILITY_NOT_GRANTED"))
        self.assertEqual(d.details.missing_capability, "delete:customer_account")

    def test_approval_required_is_falsy_with_its_approval(self) -> None:
        self.fake.script(
            allow(allowed=False, decision=pb.APPROVAL_REQUIRED, reason_code=pb.APPROVAL_REQUIRED_BY_POLICY, approval_id="approval_9")
        )
        d = self.act.check_permission("read:customer_profile")
        self.assertFalse(d)
        self.assertEqual((d.decision, d.approval_id), ("APPROVAL_REQUIRED", "approval_9"))

    def test_inconsistent_or_unknown_answers_are_denies(self) -> None:
        cases = {
            "allowed but DENY": allow(decision=pb.DENY),
            "allowed but UNSPECIFIED": allow(decision=pb.DECISION_UNSPECIFIED),
            "allowed but APPROVAL_REQUIRED": allow(decision=pb.APPROVAL_REQUIRED),
            "ALLOW but allowed false": allow(allowed=False),
            "a decision newer than the stubs": allow(decision=99),
            "empty answer": pb.CheckPermissionResponse(),
        }
        for name, response in cases.items():
            with self.subTest(name):
                self.fake.script(response)
                d = self.act.check_permission("read:customer_profile")
                self.assertIs(bool(d), False)
                self.assertIs(d.allowed, False)
                self.assertNotEqual(d.decision, "ALLOW")

    def test_unknown_reason_code_keeps_its_number(self) -> None:
        self.fake.script(deny(reason_code=999))
        self.assertEqual(self.act.check_permission("read:customer_profile").reason_code, "UNKNOWN_999")

    def test_an_answer_for_another_action_is_no_answer(self) -> None:
        self.fake.script(allow("delete:customer_account"))
        with self.assertRaises(ACTProtocolError):
            self.act.check_permission("read:customer_profile")


class ErrorsAreTypedAndRetriedOnlyWhenUnavailable(ClientTestCase):
    def test_unavailable_is_retried_a_bounded_number_of_times(self) -> None:
        self.fake.script(Fail(grpc.StatusCode.UNAVAILABLE), Fail(grpc.StatusCode.UNAVAILABLE), allow())
        self.assertTrue(self.act.check_permission("read:customer_profile"))
        self.assertEqual(self.fake.calls, 3)

    def test_unavailable_past_the_retries_raises(self) -> None:
        self.fake.script(Fail(grpc.StatusCode.UNAVAILABLE, "audit spool is full"))
        with self.assertRaises(ACTUnavailableError) as cm:
            self.act.check_permission("read:customer_profile")
        self.assertEqual(self.fake.calls, 3)  # 1 + max_retries (2)
        self.assertEqual(cm.exception.code, "UNAVAILABLE")
        self.assertIn("audit spool is full", str(cm.exception))

    def test_max_retries_zero_tries_once(self) -> None:
        self.fake.script(Fail(grpc.StatusCode.UNAVAILABLE))
        with ACTClient(token=TOKEN, address=self.fake.address, max_retries=0) as c:
            with self.assertRaises(ACTUnavailableError):
                c.check_permission("read:customer_profile")
        self.assertEqual(self.fake.calls, 1)

    def test_other_errors_are_not_retried_and_are_typed(self) -> None:
        cases = [
            (grpc.StatusCode.INVALID_ARGUMENT, ACTInvalidArgumentError),
            (grpc.StatusCode.UNAUTHENTICATED, ACTAuthenticationError),
            (grpc.StatusCode.PERMISSION_DENIED, ACTForbiddenError),
            (grpc.StatusCode.NOT_FOUND, ACTNotFoundError),
            (grpc.StatusCode.UNIMPLEMENTED, ACTUnimplementedError),
            (grpc.StatusCode.INTERNAL, ACTError),
            (grpc.StatusCode.RESOURCE_EXHAUSTED, ACTError),
        ]
        for code, exc in cases:
            with self.subTest(code=code):
                before = self.fake.calls
                self.fake.script(Fail(code, "nope"))
                with self.assertRaises(exc) as cm:
                    self.act.check_permission("read:customer_profile")
                self.assertEqual(self.fake.calls - before, 1)
                self.assertEqual(cm.exception.code, code.name)
                self.assertNotIsInstance(cm.exception, ACTUnavailableError)

    def test_no_answer_within_the_deadline_raises_timeout(self) -> None:
        self.fake.script(Sleep(1.5, allow()))
        with self.assertRaises(ACTTimeoutError) as cm:
            self.act.check_permission("read:customer_profile", timeout=0.2)
        self.assertIsInstance(cm.exception, ACTUnavailableError)
        self.assertEqual(self.fake.calls, 1, "a timeout is not retried")

    def test_a_closed_client_raises(self) -> None:
        self.act.close()
        with self.assertRaises(ACTError):
            self.act.check_permission("read:customer_profile")
        self.assertEqual(self.fake.calls, 0)


class NothingListening(unittest.TestCase):
    def test_closed_port_and_missing_socket_raise_unavailable(self) -> None:
        fake = FakeSidecar()
        address = fake.address
        fake.stop()  # the port was just ours: nothing listens on it now
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        for addr in (address, f"unix:{tmp}/nothing.sock"):
            with self.subTest(addr=addr), ACTClient(token=TOKEN, address=addr) as c:
                with self.assertRaises(ACTUnavailableError) as cm:
                    c.check_permission("read:customer_profile")
                self.assertIn(addr, str(cm.exception))
                self.assertNotIn(TOKEN, str(cm.exception))


class UnixSocket(unittest.TestCase):
    def test_unix_address(self) -> None:
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        fake = FakeSidecar(f"unix:{tmp}/act.sock")
        self.addCleanup(fake.stop)
        with ACTClient(token=TOKEN, address=fake.address) as c:
            self.assertTrue(c.check_permission("read:customer_profile"))
        self.assertEqual(fake.calls, 1)


class Configuration(unittest.TestCase):
    def test_token_and_address_from_the_environment(self) -> None:
        fake = FakeSidecar()
        self.addCleanup(fake.stop)
        env = {"ACT_TOKEN": TOKEN, "ACT_SIDECAR_GRPC_ADDR": f"{fake.address},unix:/run/act.sock"}
        with mock.patch.dict(os.environ, env):
            with ACTClient() as c:
                self.assertEqual(c.address, fake.address)
                self.assertTrue(c.check_permission("read:customer_profile"))
        self.assertEqual(fake.requests[0].token, TOKEN)

    def test_default_address(self) -> None:
        with mock.patch.dict(os.environ, {"ACT_TOKEN": TOKEN}):
            os.environ.pop("ACT_SIDECAR_GRPC_ADDR", None)
            with ACTClient() as c:
                self.assertEqual(c.address, "127.0.0.1:8711")

    def test_no_token_is_a_configuration_error(self) -> None:
        with mock.patch.dict(os.environ, {}):
            os.environ.pop("ACT_TOKEN", None)
            with self.assertRaises(ACTConfigurationError):
                ACTClient()
            with self.assertRaises(ACTConfigurationError):
                ACTClient(token="")
        with self.assertRaises(TypeError):
            ACTClient(token=42)  # type: ignore[arg-type]

    def test_repr_and_errors_never_show_the_token(self) -> None:
        c = ACTClient(token=TOKEN, address="127.0.0.1:1")
        self.addCleanup(c.close)
        self.assertNotIn(TOKEN, repr(c))


class WaitForApproval(ClientTestCase):
    def test_streams_until_decided_and_returns_the_last_state(self) -> None:
        self.fake.waits.append(
            [
                update("approval_1", pb.PENDING, expires_at="2030-01-01T00:00:00Z", reason="waiting for a human"),
                update("approval_1", pb.PENDING, expires_at="2030-01-01T00:00:00Z", reason="waiting for a human"),
                update("approval_1", pb.APPROVED, True, resolved_by="alice", comment="fine"),
            ]
        )
        seen = []
        u = self.act.wait_for_approval("approval_1", timeout=30, on_update=seen.append)
        self.assertTrue(u.approved)
        self.assertEqual((u.status, u.decided, u.resolved_by, u.comment), ("APPROVED", True, "alice", "fine"))
        self.assertEqual([s.status for s in seen], ["PENDING", "APPROVED"])
        req = self.fake.requests[0]
        self.assertEqual((req.approval_id, req.token), ("approval_1", TOKEN))
        self.assertTrue(0 < req.timeout_ms <= 30_000, req.timeout_ms)

    def test_a_wait_that_times_out_ends_pending_and_not_approved(self) -> None:
        self.fake.waits.append([update("approval_1", pb.PENDING)])
        u = self.act.wait_for_approval("approval_1", timeout=1)
        self.assertEqual((u.status, u.decided, u.approved), ("PENDING", False, False))

    def test_denied_expired_and_used_are_not_approved(self) -> None:
        for status in (pb.DENIED, pb.EXPIRED, pb.USED, pb.APPROVAL_STATUS_UNSPECIFIED, 42):
            with self.subTest(status=status):
                self.fake.waits.append([update("approval_1", status, True)])
                self.assertFalse(self.act.wait_for_approval("approval_1", timeout=1).approved)

    def test_an_update_has_no_truth_value(self) -> None:
        self.fake.waits.append([update("approval_1", pb.APPROVED, True)])
        u = self.act.wait_for_approval("approval_1", timeout=1)
        with self.assertRaises(TypeError):
            bool(u)

    def test_stream_faults(self) -> None:
        cases = [
            ([], ACTProtocolError),
            ([update("approval_other", pb.APPROVED, True)], ACTProtocolError),
            ([Fail(grpc.StatusCode.NOT_FOUND)], ACTNotFoundError),
            ([Fail(grpc.StatusCode.PERMISSION_DENIED)], ACTForbiddenError),
            ([Fail(grpc.StatusCode.UNIMPLEMENTED)], ACTUnimplementedError),
            ([update("approval_1", pb.PENDING), Fail(grpc.StatusCode.INTERNAL)], ACTError),
        ]
        for script, exc in cases:
            with self.subTest(script=script):
                self.fake.waits.append(script)
                with self.assertRaises(exc):
                    self.act.wait_for_approval("approval_1", timeout=1)

    def test_unavailable_reopens_the_stream(self) -> None:
        self.fake.waits.extend(
            [
                [update("approval_1", pb.PENDING), Fail(grpc.StatusCode.UNAVAILABLE)],
                [update("approval_1", pb.PENDING), update("approval_1", pb.APPROVED, True)],
            ]
        )
        seen = []
        u = self.act.wait_for_approval("approval_1", timeout=10, on_update=seen.append)
        self.assertTrue(u.approved)
        self.assertEqual([s.status for s in seen], ["PENDING", "APPROVED"], "the repeated state is not reported twice")
        self.assertEqual(self.fake.calls, 2)

    def test_bad_arguments(self) -> None:
        with self.assertRaises(TypeError):
            self.act.wait_for_approval(None)  # type: ignore[arg-type]
        with self.assertRaises(ACTInvalidArgumentError):
            self.act.wait_for_approval("")
        with self.assertRaises(ValueError):
            self.act.wait_for_approval("approval_1", timeout=901)
        with self.assertRaises(ValueError):
            self.act.wait_for_approval("approval_1", timeout=0)
        self.assertEqual(self.fake.calls, 0)


class PublicSurface(unittest.TestCase):
    def test_exports(self) -> None:
        for name in act_sdk.__all__:
            self.assertTrue(hasattr(act_sdk, name), name)
        for name in ("ACTUnavailableError", "ACTInvalidArgumentError", "ACTTimeoutError"):
            self.assertTrue(issubclass(getattr(act_sdk, name), ACTError))
        self.assertTrue(issubclass(act_sdk.ACTDeniedError, PermissionError))
        self.assertFalse(issubclass(act_sdk.ACTDeniedError, ACTError), "a deny is not a fault")


if __name__ == "__main__":
    unittest.main()
