using System;

namespace ActPlatform.SDK
{
    /// <summary>
    /// No decision could be had: the sidecar could not be reached, did not answer in time,
    /// refused the request or answered something that is not a decision. A deny is never an
    /// exception (it is a result with <c>Allowed == false</c>); treat any of these as a deny.
    /// </summary>
    public class ACTException : Exception
    {
        /// <summary>The error code from the server's body (e.g. "INVALID_ARGUMENT"), if it sent one.</summary>
        public string Code { get; private set; }

        /// <summary>The HTTP status of the answer, or 0 when there was none.</summary>
        public int StatusCode { get; private set; }

        /// <summary>Creates the exception.</summary>
        public ACTException(string message, string code = null, int statusCode = 0, Exception inner = null)
            : base(message, inner)
        {
            Code = code;
            StatusCode = statusCode;
        }
    }

    /// <summary>The sidecar could not be reached, or answered 503 (e.g. its audit spool is full), after the bounded retries.</summary>
    public class ACTUnavailableException : ACTException
    {
        /// <summary>Creates the exception.</summary>
        public ACTUnavailableException(string message, string code = null, int statusCode = 0, Exception inner = null)
            : base(message, code, statusCode, inner) { }
    }

    /// <summary>No answer within <see cref="ACTClient.Timeout"/>.</summary>
    public class ACTTimeoutException : ACTUnavailableException
    {
        /// <summary>Creates the exception.</summary>
        public ACTTimeoutException(string message, Exception inner = null)
            : base(message, "DEADLINE_EXCEEDED", 0, inner) { }
    }

    /// <summary>
    /// The sidecar refused the request as not well-formed (HTTP 400/413/415: e.g. an action over
    /// 256 characters or a context over 16 KiB). Arguments the SDK can judge itself raise
    /// <see cref="ArgumentException"/> before any call instead.
    /// </summary>
    public class ACTInvalidArgumentException : ACTException
    {
        /// <summary>The request field at fault, when the server named one (e.g. "context").</summary>
        public string Field { get; private set; }

        /// <summary>Creates the exception.</summary>
        public ACTInvalidArgumentException(string message, string code, int statusCode, string field)
            : base(message, code, statusCode)
        {
            Field = field;
        }
    }

    /// <summary>HTTP 401: the credential was missing or wrong (the control plane's central enforcement needs one; the sidecar does not).</summary>
    public class ACTAuthenticationException : ACTException
    {
        /// <summary>Creates the exception.</summary>
        public ACTAuthenticationException(string message, string code, int statusCode)
            : base(message, code, statusCode) { }
    }

    /// <summary>HTTP 403: the credential may not call this API. Not a deny decision.</summary>
    public class ACTForbiddenException : ACTException
    {
        /// <summary>Creates the exception.</summary>
        public ACTForbiddenException(string message, string code, int statusCode)
            : base(message, code, statusCode) { }
    }

    /// <summary>The answer was not a decision (not JSON, wrong types, or for another action).</summary>
    public class ACTProtocolException : ACTException
    {
        /// <summary>Creates the exception.</summary>
        public ACTProtocolException(string message, int statusCode = 0, Exception inner = null)
            : base(message, null, statusCode, inner) { }
    }
}
