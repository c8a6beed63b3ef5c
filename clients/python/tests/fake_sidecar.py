"""A scripted DecisionService on a real gRPC server (loopback or unix socket), for the
client's unit tests: it answers what a test tells it to — including what a correct
sidecar never sends — and records every request, its metadata and its peer."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any, List

import grpc

from act_sdk._proto import decision_pb2 as pb
from act_sdk._proto import decision_pb2_grpc as pb_grpc


class Fail:
    """A scripted gRPC error."""

    def __init__(self, code: grpc.StatusCode, details: str = "scripted") -> None:
        self.code = code
        self.details = details


class Sleep:
    """Answer after `seconds` (to outlive a client's deadline)."""

    def __init__(self, seconds: float, then: Any = None) -> None:
        self.seconds = seconds
        self.then = then


def allow(action: str = "read:customer_profile", **kw: Any) -> pb.CheckPermissionResponse:
    fields = dict(
        allowed=True,
        action=action,
        decision=pb.ALLOW,
        reason_code=pb.GRANTED,
        reason="Token valid, capability granted",
        audit_id="audit_fake1",
        policy_revision=7,
        details=pb.DecisionDetails(remaining_daily_budget=41, remaining_rate=9, policy_id="policy_fake"),
    )
    fields.update(kw)
    return pb.CheckPermissionResponse(**fields)


def deny(action: str = "read:customer_profile", **kw: Any) -> pb.CheckPermissionResponse:
    fields = dict(
        allowed=False,
        action=action,
        decision=pb.DENY,
        reason_code=pb.CAPABILITY_NOT_GRANTED,
        reason="Capability not granted in token",
        audit_id="audit_fake2",
        policy_revision=7,
        details=pb.DecisionDetails(missing_capability=action),
    )
    fields.update(kw)
    return pb.CheckPermissionResponse(**fields)


class _Servicer(pb_grpc.DecisionServiceServicer):
    def __init__(self, fake: "FakeSidecar") -> None:
        self.fake = fake

    def _record(self, request: Any, context: grpc.ServicerContext) -> None:
        with self.fake.lock:
            self.fake.requests.append(request)
            self.fake.metadata.append(dict(context.invocation_metadata()))
            self.fake.peers.append(context.peer())

    @staticmethod
    def _play(step: Any, context: grpc.ServicerContext) -> Any:
        while isinstance(step, Sleep):
            time.sleep(step.seconds)
            step = step.then
        if isinstance(step, Fail):
            context.abort(step.code, step.details)
        return step

    def CheckPermission(self, request, context):  # noqa: N802 (gRPC names)
        self._record(request, context)
        step = self.fake.next_check(request)
        return self._play(step, context)

    def WaitForApproval(self, request, context):  # noqa: N802
        self._record(request, context)
        script = self.fake.next_wait(request)
        for step in script:
            msg = self._play(step, context)
            if msg is not None:
                yield msg


class FakeSidecar:
    """``checks``: responses (or Fail/Sleep, or a function of the request) played in order,
    the last one repeated. ``waits``: one list of ApprovalUpdate/Fail/Sleep per call."""

    def __init__(self, address: str = "127.0.0.1:0") -> None:
        self.lock = threading.Lock()
        self.requests: List[Any] = []
        self.metadata: List[dict] = []
        self.peers: List[str] = []
        self.checks: List[Any] = [allow()]
        self.waits: List[List[Any]] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_DecisionServiceServicer_to_server(_Servicer(self), self._server)
        port = self._server.add_insecure_port(address)
        self.address = f"127.0.0.1:{port}" if not address.startswith("unix:") else address
        self._server.start()

    def script(self, *steps: Any) -> "FakeSidecar":
        self.checks = list(steps)
        return self

    def next_check(self, request: Any) -> Any:
        with self.lock:
            step = self.checks.pop(0) if len(self.checks) > 1 else self.checks[0]
        return step(request) if callable(step) and not isinstance(step, (Fail, Sleep)) else step

    def next_wait(self, request: Any) -> List[Any]:
        with self.lock:
            if not self.waits:
                return [Fail(grpc.StatusCode.UNIMPLEMENTED, "no wait scripted")]
            return self.waits.pop(0)

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self._server.stop(grace=None).wait()


def update(approval_id: str, status: int, decided: bool = False, **kw: Any) -> pb.ApprovalUpdate:
    return pb.ApprovalUpdate(approval_id=approval_id, status=status, decided=decided, **kw)

