using System.Collections.Generic;

namespace ActPlatform.SDK
{
    /// <summary>One question for ACT: may this client's token do <see cref="Action"/> on <see cref="Resource"/>?</summary>
    public class PermissionCheck
    {
        /// <summary>The capability being exercised, "verb:resource_type", e.g. "create:support_ticket". Required.</summary>
        public string Action { get; set; }

        /// <summary>The resource acted on, e.g. "ticket_system". Optional.</summary>
        public string Resource { get; set; }

        /// <summary>
        /// Context for policy conditions and the audit trail: an anonymous object
        /// (<c>new { userId = "user_123", reason = "Customer inquiry" }</c>), any class with
        /// public properties, or an <see cref="IDictionary{TKey,TValue}"/> with string keys.
        /// Values: strings, numbers, booleans, null, dates (ISO 8601), enums (names), lists and
        /// nested objects. Optional.
        /// </summary>
        public object Context { get; set; }

        /// <summary>
        /// An approval from an earlier APPROVAL_REQUIRED result, presented once a human approved it
        /// (with exactly the same action, resource and context). Optional.
        /// </summary>
        public string ApprovalId { get; set; }
    }
}
