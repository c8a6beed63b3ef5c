using System;
using System.IO;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;

namespace ActPlatform.SDK
{
    // The sidecar's REST JSON (POST /api/enforcement/check), read with DataContractJsonSerializer:
    // present in .NET and in Mono alike (System.Text.Json is not in Mono).
    [DataContract]
    internal sealed class CheckResponseWire
    {
        // object, not bool: DataContractJsonSerializer would read the string "true" as true; only a JSON true counts.
        [DataMember(Name = "allowed", IsRequired = false)] public object Allowed;
        [DataMember(Name = "action", IsRequired = false)] public string Action;
        [DataMember(Name = "reason", IsRequired = false)] public string Reason;
        [DataMember(Name = "audit_id", IsRequired = false)] public string AuditId;
        [DataMember(Name = "decision", IsRequired = false)] public string Decision;
        [DataMember(Name = "reason_code", IsRequired = false)] public string ReasonCode;
        [DataMember(Name = "details", IsRequired = false)] public DecisionDetails Details;
        [DataMember(Name = "approval_id", IsRequired = false)] public string ApprovalId;
        [DataMember(Name = "policy_revision", IsRequired = false)] public long? PolicyRevision;
    }

    [DataContract]
    internal sealed class ErrorBodyWire
    {
        [DataMember(Name = "error", IsRequired = false)] public ErrorWire Error;
    }

    [DataContract]
    internal sealed class ErrorWire
    {
        [DataMember(Name = "code", IsRequired = false)] public string Code;
        [DataMember(Name = "message", IsRequired = false)] public string Message;
        [DataMember(Name = "field", IsRequired = false)] public string Field;
    }

    internal static class Wire
    {
        /// <summary>Parses a JSON object into T; null when it is not one of that shape.</summary>
        internal static T Read<T>(string json) where T : class
        {
            if (json == null) return null;
            string trimmed = json.Trim();
            // Mono's reader accepts a truncated object ("{...": no closing brace); a body cut short is no answer.
            if (trimmed.Length < 2 || trimmed[0] != '{' || trimmed[trimmed.Length - 1] != '}') return null;
            try
            {
                var serializer = new DataContractJsonSerializer(typeof(T));
                using (var stream = new MemoryStream(Encoding.UTF8.GetBytes(trimmed)))
                {
                    return serializer.ReadObject(stream) as T;
                }
            }
            catch (Exception)
            {
                // Whatever the reader throws (SerializationException, XmlException, and on Mono even
                // TargetInvocationException for trailing garbage), the text is not this shape.
                return null;
            }
        }

        /// <summary>Maps the wire's answer to a result that is Allowed only for a consistent ALLOW.</summary>
        internal static PermissionResult ToResult(CheckResponseWire w)
        {
            PermissionDecision decision;
            switch (w.Decision)
            {
                case "ALLOW": decision = PermissionDecision.Allow; break;
                case "DENY": decision = PermissionDecision.Deny; break;
                case "APPROVAL_REQUIRED": decision = PermissionDecision.ApprovalRequired; break;
                default: decision = PermissionDecision.Deny; break; // unknown reads as DENY (decision.proto)
            }
            bool allowed = w.Allowed is bool && (bool)w.Allowed && decision == PermissionDecision.Allow;
            if (decision == PermissionDecision.Allow && !allowed) decision = PermissionDecision.Deny;
            return new PermissionResult
            {
                Allowed = allowed,
                Action = w.Action,
                Decision = decision,
                Reason = w.Reason ?? "",
                ReasonCode = w.ReasonCode ?? "REASON_CODE_UNSPECIFIED",
                AuditId = w.AuditId ?? "",
                ApprovalId = string.IsNullOrEmpty(w.ApprovalId) ? null : w.ApprovalId,
                Details = w.Details ?? new DecisionDetails(),
                PolicyRevision = w.PolicyRevision ?? 0,
            };
        }
    }
}
