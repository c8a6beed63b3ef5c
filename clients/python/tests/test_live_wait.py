"""wait_for_approval against the live sidecar's WaitForApproval stream (run by
test/integration/sdk-python.test.ts; fails without its environment): the stream
reports PENDING, then the human's decision; APPROVED from the sidecar means the
very next check presenting the approval is allowed (once); a denied approval stays
denied; a stranger's token and an unknown id get an error, never an approval."""

from __future__ import annotations

import threading
import unittest
from typing import Optional

from act_sdk import ACTClient, ACTError, ACTUnimplementedError
from live_support import E, admin, approval_at_control_plane, load_env, wait_until


def setUpModule() -> None:  # noqa: N802
    load_env()


class WaitForApproval(unittest.TestCase):
    def setUp(self) -> None:
        self.act = ACTClient(token=E["ACT_TEST_APPROVAL_TOKEN"])
        self.addCleanup(self.act.close)

    def ask(self, amount: int, approval_id: Optional[str] = None):
        return self.act.check_permission(
            "create:transaction", resource="acct_9", context={"amount": amount}, approval_id=approval_id
        )

    def test_wait_for_approval_then_present_it(self) -> None:
        pending = self.ask(7000)
        self.assertEqual(pending.decision, "APPROVAL_REQUIRED")
        approval_at_control_plane(pending.approval_id)
        seen = []
        result: dict = {}

        def wait() -> None:
            try:
                result["update"] = self.act.wait_for_approval(pending.approval_id, timeout=60, on_update=seen.append)
            except BaseException as err:  # reported by the main thread
                result["error"] = err

        waiter = threading.Thread(target=wait)
        waiter.start()
        wait_until("the first update", lambda: seen or result or None)
        if isinstance(result.get("error"), ACTUnimplementedError):
            waiter.join()
            self.fail(f"the sidecar does not serve WaitForApproval yet: {result['error']}")
        status, body = admin("POST", f"/api/approvals/{pending.approval_id}/approve", {"comment": "go ahead"})
        self.assertEqual(status, 200, body)
        waiter.join(70)
        self.assertNotIn("error", result, result.get("error"))
        update = result["update"]
        self.assertEqual(seen[0].status, "PENDING")
        self.assertTrue(update.approved)
        self.assertTrue(update.decided)
        self.assertEqual(update.comment, "go ahead")
        self.assertEqual(update.approval_id, pending.approval_id)
        # The sidecar said APPROVED from its replica, so the very next check with it is allowed.
        self.assertTrue(self.ask(7000, pending.approval_id))
        self.assertFalse(self.ask(7000, pending.approval_id))

    def test_wait_for_a_denied_approval(self) -> None:
        pending = self.ask(8000)
        approval_at_control_plane(pending.approval_id)
        status, body = admin("POST", f"/api/approvals/{pending.approval_id}/deny", {"comment": "no"})
        self.assertEqual(status, 200, body)
        update = self.act.wait_for_approval(pending.approval_id, timeout=30)
        self.assertFalse(update.approved)
        self.assertEqual(update.status, "DENIED")
        d = self.ask(8000, pending.approval_id)
        self.assertFalse(d)
        self.assertEqual(d.reason_code, "APPROVAL_DENIED")

    def test_another_agents_token_cannot_wait_on_it(self) -> None:
        pending = self.ask(6000)
        approval_at_control_plane(pending.approval_id)
        with ACTClient() as stranger:
            with self.assertRaises(ACTError) as cm:
                stranger.wait_for_approval(pending.approval_id, timeout=5)
            self.assertNotIsInstance(cm.exception, ACTUnimplementedError)

    def test_an_unknown_approval_cannot_be_waited_on(self) -> None:
        with self.assertRaises(ACTError) as cm:
            self.act.wait_for_approval("approval_doesnotexist0000000000", timeout=5)
        self.assertNotIsInstance(cm.exception, ACTUnimplementedError)



if __name__ == "__main__":
    unittest.main()
