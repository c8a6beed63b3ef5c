"""What the sidecar answers: a decision, and the states of an approval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ._proto import decision_pb2 as pb

__all__ = ["Decision", "DecisionDetails", "ApprovalUpdate"]

_DECISIONS = {pb.ALLOW: "ALLOW", pb.DENY: "DENY", pb.APPROVAL_REQUIRED: "APPROVAL_REQUIRED"}


def _enum_name(enum, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:  # a code newer than these stubs
        return f"UNKNOWN_{value}"


def _opt(s: str) -> Optional[str]:
    return s or None


@dataclass(frozen=True)
class DecisionDetails:
    """What an agent can do about a decision (see DecisionDetails in decision.proto)."""

    #: The capability that was required and not granted (CAPABILITY_NOT_GRANTED).
    missing_capability: Optional[str] = None
    #: Milliseconds until a retry can succeed; 0 when not applicable.
    retry_after_ms: int = 0
    #: Start of the next allowed window, RFC 3339 (OUTSIDE_ALLOWED_HOURS).
    next_allowed_at: Optional[str] = None
    #: Actions left today under the deciding policy's daily maximum; None when it has none.
    remaining_daily_budget: Optional[int] = None
    #: Actions left in the current rate-limit window; None when there is no rate limit.
    remaining_rate: Optional[int] = None
    #: The policy whose rule produced the decision, if any.
    policy_id: Optional[str] = None
    #: The failing CEL condition or matching approval rule, if any.
    rule: Optional[str] = None

    @classmethod
    def _from_pb(cls, d: "pb.DecisionDetails") -> "DecisionDetails":
        return cls(
            missing_capability=_opt(d.missing_capability),
            retry_after_ms=int(d.retry_after_ms),
            next_allowed_at=_opt(d.next_allowed_at),
            remaining_daily_budget=(
                int(d.remaining_daily_budget) if d.HasField("remaining_daily_budget") else None
            ),
            remaining_rate=int(d.remaining_rate) if d.HasField("remaining_rate") else None,
            policy_id=_opt(d.policy_id),
            rule=_opt(d.rule),
        )


@dataclass(frozen=True)
class Decision:
    """The answer to one check. Its truth value is :attr:`allowed`::

        if act.check_permission("read:customer_profile", resource="customer_123"):
            ...
    """

    #: True only when the sidecar allowed the action (``decision == "ALLOW"``).
    allowed: bool
    #: The action that was checked.
    action: str
    #: ``"ALLOW"``, ``"DENY"`` or ``"APPROVAL_REQUIRED"`` (anything else reads as DENY).
    decision: str
    #: A human-readable reason, e.g. "Token valid, capability granted".
    reason: str
    #: The stable reason code's name, e.g. ``"GRANTED"``, ``"CAPABILITY_NOT_GRANTED"``.
    reason_code: str
    #: The id of the audit record of this decision (``"audit_..."``).
    audit_id: str
    #: The approval to wait on when ``decision == "APPROVAL_REQUIRED"``, else None.
    approval_id: Optional[str]
    #: Retry time, missing capability, remaining budgets.
    details: DecisionDetails
    #: The control-plane revision the decision was made at.
    policy_revision: int

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def _from_pb(cls, r: "pb.CheckPermissionResponse") -> "Decision":
        # Fail closed on anything but a consistent ALLOW (the proto: UNSPECIFIED reads as DENY).
        name = _DECISIONS.get(r.decision, "DENY")
        allowed = bool(r.allowed) and name == "ALLOW"
        if name == "ALLOW" and not allowed:
            name = "DENY"
        return cls(
            allowed=allowed,
            action=r.action,
            decision=name,
            reason=r.reason,
            reason_code=_enum_name(pb.ReasonCode, r.reason_code),
            audit_id=r.audit_id,
            approval_id=_opt(r.approval_id),
            details=DecisionDetails._from_pb(r.details),
            policy_revision=int(r.policy_revision),
        )


@dataclass(frozen=True)
class ApprovalUpdate:
    """The state of an approval request at one moment (from WaitForApproval).

    ``APPROVED`` is not itself permission: repeat the same check with
    ``approval_id=`` to be allowed (once). For that reason an update has no truth
    value (``if update:`` raises TypeError); test :attr:`approved`.
    """

    approval_id: str
    #: ``"PENDING"``, ``"APPROVED"``, ``"DENIED"``, ``"EXPIRED"`` or ``"USED"``.
    status: str
    #: True once nothing more will change.
    decided: bool
    #: Who decided (API key name), when a human did.
    resolved_by: Optional[str]
    #: The approver's comment, if any.
    comment: Optional[str]
    #: The request's deadline, RFC 3339.
    expires_at: Optional[str]
    #: A sentence for the agent: what happened and what to do next.
    reason: str

    @property
    def approved(self) -> bool:
        """True when a human approved and the approval is still unused."""
        return self.status == "APPROVED"

    def __bool__(self) -> bool:
        raise TypeError(
            "an ApprovalUpdate has no truth value: test .approved, then repeat the check "
            "with approval_id= (APPROVED is not itself permission)"
        )

    @classmethod
    def _from_pb(cls, u: "pb.ApprovalUpdate") -> "ApprovalUpdate":
        return cls(
            approval_id=u.approval_id,
            status=_enum_name(pb.ApprovalStatus, u.status),
            decided=bool(u.decided),
            resolved_by=_opt(u.resolved_by),
            comment=_opt(u.comment),
            expires_at=_opt(u.expires_at),
            reason=u.reason,
        )
