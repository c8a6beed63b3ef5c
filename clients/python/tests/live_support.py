"""What the live test modules share: the environment npm test passes (addresses,
tokens, the control plane for approvals and revocations) and REST calls to the
control plane with the admin key."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

ENV_NAMES = [
    "ACT_SIDECAR_GRPC_ADDR",
    "ACT_TOKEN",
    "ACT_TEST_UNIX_ADDR",
    "ACT_TEST_CLOSED_ADDR",
    "ACT_TEST_TICKETS_ONLY_TOKEN",
    "ACT_TEST_APPROVAL_TOKEN",
    "ACT_TEST_REVOCABLE_TOKEN",
    "ACT_TEST_REVOCABLE_TOKEN_ID",
    "ACT_TEST_CONTROL_PLANE_URL",
    "ACT_TEST_ADMIN_KEY",
]
E: dict = {}


def load_env() -> None:
    """Fails (never skips) when the live environment is missing."""
    missing = [n for n in ENV_NAMES if not os.environ.get(n)]
    if missing:
        raise RuntimeError(
            f"test_live needs a running sidecar and control plane; missing {missing}. "
            "Run it through npm test (test/integration/sdk-python.test.ts)."
        )
    E.update({n: os.environ[n] for n in ENV_NAMES})


def admin(method: str, route: str, body: Any = None) -> tuple:
    """A call to the control plane's REST API with the admin key: (status, JSON body or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(E["ACT_TEST_CONTROL_PLANE_URL"] + route, data=data, method=method)
    req.add_header("authorization", f"Bearer {E['ACT_TEST_ADMIN_KEY']}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            text = res.read().decode()
            status = res.status
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        status = err.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_until(what: str, fn: Callable[[], Optional[Any]], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def audit_record(audit_id: str) -> dict:
    def find() -> Optional[dict]:
        status, text = admin("GET", "/api/audit/export?format=ndjson")
        assert status == 200, text
        for line in str(text).splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec["audit_id"] == audit_id:
                    return rec
        return None

    return wait_until(f"audit record {audit_id} at the control plane", find)


def approval_at_control_plane(approval_id: str) -> dict:
    def get() -> Optional[dict]:
        status, body = admin("GET", f"/api/approvals/{approval_id}")
        return body if status == 200 else None

    return wait_until(f"approval {approval_id} at the control plane", get)
