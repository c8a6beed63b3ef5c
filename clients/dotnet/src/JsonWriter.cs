using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Reflection;
using System.Text;

namespace ActPlatform.SDK
{
    /// <summary>
    /// Writes a check's JSON body. Hand-written because the one serializer that handles
    /// anonymous objects (<c>Context = new { userId = "user_123" }</c>) in both .NET and Mono does
    /// not exist: System.Text.Json is missing from Mono, JavaScriptSerializer from .NET (Core), and
    /// DataContractJsonSerializer refuses anonymous types. Values JSON cannot carry are refused
    /// with <see cref="ArgumentException"/>, before any call.
    /// </summary>
    internal static class JsonWriter
    {
        private const int MaxDepth = 32;
        // Numbers travel as doubles: larger integers would arrive changed (and be audited changed).
        private const double MaxSafeInteger = 9007199254740992d; // 2^53

        internal static string CheckBody(string token, PermissionCheck check)
        {
            var sb = new StringBuilder(256);
            sb.Append("{\"token\":");
            WriteString(sb, token);
            sb.Append(",\"action\":");
            WriteString(sb, check.Action);
            if (check.Resource != null)
            {
                sb.Append(",\"resource\":");
                WriteString(sb, check.Resource);
            }
            if (check.Context != null)
            {
                sb.Append(",\"context\":");
                WriteContext(sb, check.Context);
            }
            if (check.ApprovalId != null)
            {
                sb.Append(",\"approval_id\":");
                WriteString(sb, check.ApprovalId);
            }
            sb.Append('}');
            return sb.ToString();
        }

        /// <summary>The context must be a JSON object: an object with properties or a dictionary.</summary>
        internal static void WriteContext(StringBuilder sb, object context)
        {
            if (IsScalar(context) || (context is IEnumerable && !(context is IDictionary) && !(context is IEnumerable<KeyValuePair<string, object>>)))
                throw new ArgumentException(
                    "Context must be an object (an anonymous object, a class or an IDictionary<string, object>), not "
                    + context.GetType().Name, "check");
            WriteValue(sb, context, "Context", 0);
        }

        private static bool IsScalar(object v)
        {
            return v is string || v is bool || v is char || v is Enum || v is DateTime || v is DateTimeOffset
                || v is Guid || v is Uri || v is TimeSpan || v.GetType().IsPrimitive || v is decimal;
        }

        private static void WriteValue(StringBuilder sb, object v, string path, int depth)
        {
            if (depth > MaxDepth)
                throw new ArgumentException(path + ": Context is nested more than " + MaxDepth + " levels deep (or refers to itself)", "check");
            if (v == null) { sb.Append("null"); return; }
            if (v is string) { WriteString(sb, (string)v); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (v is char) { WriteString(sb, v.ToString()); return; }
            if (v is Enum) { WriteString(sb, v.ToString()); return; }
            if (v is Guid || v is Uri) { WriteString(sb, v.ToString()); return; }
            if (v is DateTime) { WriteString(sb, ((DateTime)v).ToString("o", CultureInfo.InvariantCulture)); return; }
            if (v is DateTimeOffset) { WriteString(sb, ((DateTimeOffset)v).ToString("o", CultureInfo.InvariantCulture)); return; }
            if (v is TimeSpan) { WriteString(sb, ((TimeSpan)v).ToString("c", CultureInfo.InvariantCulture)); return; }
            if (v is float || v is double)
            {
                double d = Convert.ToDouble(v, CultureInfo.InvariantCulture);
                if (double.IsNaN(d) || double.IsInfinity(d))
                    throw new ArgumentException(path + " must be a finite number (JSON has no NaN or Infinity)", "check");
                sb.Append(d == 0 ? "0" : d.ToString("R", CultureInfo.InvariantCulture));
                return;
            }
            if (v is decimal)
            {
                sb.Append(((decimal)v).ToString(CultureInfo.InvariantCulture));
                return;
            }
            if (v is sbyte || v is byte || v is short || v is ushort || v is int || v is uint || v is long || v is ulong)
            {
                double magnitude = Math.Abs(Convert.ToDouble(v, CultureInfo.InvariantCulture));
                if (magnitude > MaxSafeInteger)
                    throw new ArgumentException(path + " = " + v + " is beyond ±2^53 and would change on the way (numbers travel as doubles)", "check");
                sb.Append(Convert.ToString(v, CultureInfo.InvariantCulture));
                return;
            }
            if (v is Delegate || v is Type || v is MemberInfo || v is IntPtr || v is UIntPtr || v is System.IO.Stream)
                throw new ArgumentException(path + " is a " + v.GetType().Name + ", which JSON cannot carry", "check");
            var dict = v as IDictionary;
            if (dict != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (DictionaryEntry e in dict)
                {
                    var key = e.Key as string;
                    if (key == null)
                        throw new ArgumentException(path + " has a " + e.Key.GetType().Name + " key; Context keys must be strings", "check");
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, key);
                    sb.Append(':');
                    WriteValue(sb, e.Value, path + "." + key, depth + 1);
                }
                sb.Append('}');
                return;
            }
            // ExpandoObject and other generic-only dictionaries.
            var pairs = v as IEnumerable<KeyValuePair<string, object>>;
            if (pairs != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (var e in pairs)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, e.Key);
                    sb.Append(':');
                    WriteValue(sb, e.Value, path + "." + e.Key, depth + 1);
                }
                sb.Append('}');
                return;
            }
            var list = v as IEnumerable;
            if (list != null)
            {
                sb.Append('[');
                int i = 0;
                foreach (var item in list)
                {
                    if (i > 0) sb.Append(',');
                    WriteValue(sb, item, path + "[" + i + "]", depth + 1);
                    i++;
                }
                sb.Append(']');
                return;
            }
            // Any other object (anonymous types included): its public instance properties and fields.
            sb.Append('{');
            bool firstMember = true;
            var type = v.GetType();
            foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (!p.CanRead || p.GetIndexParameters().Length > 0) continue;
                if (!firstMember) sb.Append(',');
                firstMember = false;
                WriteString(sb, p.Name);
                sb.Append(':');
                object value;
                try { value = p.GetValue(v, null); }
                catch (TargetInvocationException e)
                {
                    throw new ArgumentException(path + "." + p.Name + " could not be read: " + e.InnerException.Message, "check", e.InnerException);
                }
                WriteValue(sb, value, path + "." + p.Name, depth + 1);
            }
            foreach (var f in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            {
                if (!firstMember) sb.Append(',');
                firstMember = false;
                WriteString(sb, f.Name);
                sb.Append(':');
                WriteValue(sb, f.GetValue(v), path + "." + f.Name, depth + 1);
            }
            sb.Append('}');
        }

        /// <summary>A JSON string (RFC 8259): quotes, backslashes and control characters escaped; lone surrogates refused.</summary>
        internal static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            for (int i = 0; i < s.Length; i++)
            {
                char c = s[i];
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20 || c == '\u2028' || c == '\u2029')
                        {
                            sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        }
                        else if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
                        {
                            sb.Append(c).Append(s[i + 1]);
                            i++;
                        }
                        else if (char.IsSurrogate(c))
                        {
                            throw new ArgumentException("a string holds a lone UTF-16 surrogate, which UTF-8 cannot carry", "check");
                        }
                        else
                        {
                            sb.Append(c);
                        }
                        break;
                }
            }
            sb.Append('"');
        }
    }
}
