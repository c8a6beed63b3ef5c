using System.Runtime.Serialization;

namespace ActPlatform.SDK
{
    /// <summary>What the sidecar decided. Anything it might send that is not one of these reads as <see cref="Deny"/>.</summary>
    public enum PermissionDecision
    {
        /// <summary>Not a known decision: treated as a deny.</summary>
        Unspecified = 0,
        /// <summary>The action may proceed.</summary>
        Allow = 1,
        /// <summary>The action must not proceed.</summary>
        Deny = 2,
        /// <summary>The action may proceed only after a human approves it (see <see cref="PermissionResult.ApprovalId"/>).</summary>
        ApprovalRequired = 3,
    }

    /// <summary>The answer to one <see cref="PermissionCheck"/>.</summary>
    public sealed class PermissionResult
    {
        /// <summary>True only when the sidecar allowed the action (<see cref="Decision"/> is Allow).</summary>
        public bool Allowed { get; internal set; }

        /// <summary>The action that was checked.</summary>
        public string Action { get; internal set; }

        /// <summary>Allow, Deny or ApprovalRequired.</summary>
        public PermissionDecision Decision { get; internal set; }

        /// <summary>A human-readable reason, e.g. "Token valid, capability granted".</summary>
        public string Reason { get; internal set; }

        /// <summary>The stable reason code, e.g. "GRANTED", "CAPABILITY_NOT_GRANTED" (see ReasonCode in decision.proto).</summary>
        public string ReasonCode { get; internal set; }

        /// <summary>The id of the audit record of this decision ("audit_...").</summary>
        public string AuditId { get; internal set; }

        /// <summary>The approval to present once a human approved it, when Decision is ApprovalRequired; else null.</summary>
        public string ApprovalId { get; internal set; }

        /// <summary>What the agent can do about the decision (retry time, missing capability, budgets).</summary>
        public DecisionDetails Details { get; internal set; }

        /// <summary>The control-plane revision the decision was made at.</summary>
        public long PolicyRevision { get; internal set; }

        /// <summary>e.g. "Deny CAPABILITY_NOT_GRANTED: Capability not granted in token".</summary>
        public override string ToString()
        {
            return Decision + " " + ReasonCode + ": " + Reason;
        }
    }

    /// <summary>Details of a decision (see DecisionDetails in decision.proto); absent fields are null.</summary>
    [DataContract]
    public sealed class DecisionDetails
    {
        /// <summary>The capability that was required and not granted.</summary>
        [DataMember(Name = "missing_capability", IsRequired = false, EmitDefaultValue = false)]
        public string MissingCapability { get; set; }

        /// <summary>Milliseconds until a retry can succeed (rate limits, daily maximum, allowed hours).</summary>
        [DataMember(Name = "retry_after_ms", IsRequired = false, EmitDefaultValue = false)]
        public long? RetryAfterMs { get; set; }

        /// <summary>Start of the next allowed window, RFC 3339.</summary>
        [DataMember(Name = "next_allowed_at", IsRequired = false, EmitDefaultValue = false)]
        public string NextAllowedAt { get; set; }

        /// <summary>Actions left today under the tightest daily maximum.</summary>
        [DataMember(Name = "remaining_daily_budget", IsRequired = false, EmitDefaultValue = false)]
        public long? RemainingDailyBudget { get; set; }

        /// <summary>Actions left in the current rate-limit window.</summary>
        [DataMember(Name = "remaining_rate", IsRequired = false, EmitDefaultValue = false)]
        public long? RemainingRate { get; set; }

        /// <summary>The policy whose rule produced the decision.</summary>
        [DataMember(Name = "policy_id", IsRequired = false, EmitDefaultValue = false)]
        public string PolicyId { get; set; }

        /// <summary>The failing condition or matching approval rule.</summary>
        [DataMember(Name = "rule", IsRequired = false, EmitDefaultValue = false)]
        public string Rule { get; set; }
    }
}
