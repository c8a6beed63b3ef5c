using System;
using System.Diagnostics;
using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace ActPlatform.SDK
{
    /// <summary>
    /// A client of the ACT sidecar's loopback REST API (<c>POST /api/enforcement/check</c>).
    /// <code>
    /// var actClient = new ACTClient("act_...");
    /// var result = await actClient.CheckPermissionAsync(new PermissionCheck
    /// {
    ///     Action = "create:support_ticket",
    ///     Resource = "ticket_system",
    ///     Context = new { userId = "user_123", reason = "Customer inquiry" }
    /// });
    /// if (!result.Allowed) throw new UnauthorizedAccessException(result.Reason);
    /// </code>
    /// A deny is a result with <c>Allowed == false</c>; anything that prevents a decision throws an
    /// <see cref="ACTException"/> — never an allowed result. One <see cref="HttpClient"/> per client,
    /// reused by every call: share one ACTClient across threads.
    /// </summary>
    public sealed class ACTClient : IDisposable
    {
        /// <summary>Where the sidecar's REST API listens unless ACT_SIDECAR_HTTP_ADDR says otherwise.</summary>
        public const string DefaultBaseUrl = "http://127.0.0.1:8710";

        /// <summary>The SDK's version.</summary>
        public const string Version = "0.1.0";

        private readonly string token;
        private readonly Uri checkUri;
        private readonly HttpClient http;
        private readonly bool ownsHttp;
        private TimeSpan timeout = TimeSpan.FromSeconds(2);
        private int maxRetries = 2;
        private int disposed;

        [ThreadStatic] private static Random jitter;

        /// <summary>A client with the token from ACT_TOKEN and the sidecar at ACT_SIDECAR_HTTP_ADDR (else 127.0.0.1:8710).</summary>
        public ACTClient() : this(Environment.GetEnvironmentVariable("ACT_TOKEN")) { }

        /// <summary>A client for this token; the sidecar at ACT_SIDECAR_HTTP_ADDR (else 127.0.0.1:8710).</summary>
        /// <param name="token">The agent's ACT token, "act_..." as issued by POST /api/tokens.</param>
        public ACTClient(string token) : this(token, null) { }

        /// <summary>A client for this token and sidecar.</summary>
        /// <param name="token">The agent's ACT token.</param>
        /// <param name="baseUrl">The sidecar's REST base URL, e.g. "http://127.0.0.1:8710" (null: the default).</param>
        public ACTClient(string token, string baseUrl) : this(token, baseUrl, null) { }

        /// <summary>A client for this token and sidecar that sends its requests through <paramref name="httpClient"/> (not disposed by this client).</summary>
        public ACTClient(string token, string baseUrl, HttpClient httpClient)
        {
            if (string.IsNullOrEmpty(token))
                throw new ArgumentException("an ACT token is required: new ACTClient(\"act_...\") or ACT_TOKEN", "token");
            this.token = token;
            Uri baseUri = ResolveBaseUrl(baseUrl);
            BaseUrl = baseUri;
            checkUri = new Uri(baseUri, "api/enforcement/check");
            if (httpClient != null)
            {
                http = httpClient;
            }
            else
            {
                // A token sent to the pod-local sidecar must not detour through an HTTP proxy.
                var handler = new HttpClientHandler { UseProxy = !baseUri.IsLoopback };
                http = new HttpClient(handler) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
                ownsHttp = true;
            }
        }

        /// <summary>The sidecar's REST base URL.</summary>
        public Uri BaseUrl { get; private set; }

        /// <summary>How long one check may take in all, retries included (default 2 s).</summary>
        public TimeSpan Timeout
        {
            get { return timeout; }
            set
            {
                if (value <= TimeSpan.Zero) throw new ArgumentOutOfRangeException("value", "Timeout must be positive");
                timeout = value;
            }
        }

        /// <summary>Extra attempts after a connection failure or a 503 answer (default 2, at most 10). Nothing else is retried.</summary>
        public int MaxRetries
        {
            get { return maxRetries; }
            set
            {
                if (value < 0 || value > 10) throw new ArgumentOutOfRangeException("value", "MaxRetries must be 0-10");
                maxRetries = value;
            }
        }

        private static Uri ResolveBaseUrl(string baseUrl)
        {
            string raw = baseUrl;
            if (raw == null)
            {
                string env = Environment.GetEnvironmentVariable("ACT_SIDECAR_HTTP_ADDR");
                raw = string.IsNullOrEmpty(env) ? DefaultBaseUrl : env.Trim();
            }
            if (!raw.Contains("://")) raw = "http://" + raw; // ACT_SIDECAR_HTTP_ADDR is host:port
            Uri uri;
            if (!Uri.TryCreate(raw, UriKind.Absolute, out uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
                throw new ArgumentException("baseUrl must be an http(s) URL such as http://127.0.0.1:8710, not " + raw, "baseUrl");
            if (!uri.AbsolutePath.EndsWith("/")) uri = new Uri(uri.GetLeftPart(UriPartial.Path) + "/");
            return uri;
        }

        /// <summary>
        /// Asks whether this client's token may perform <c>check.Action</c> on <c>check.Resource</c>.
        /// Arguments are checked before any call (<see cref="ArgumentException"/>).
        /// </summary>
        /// <returns>The decision; <c>Allowed</c> is true only when the sidecar allowed the action.</returns>
        /// <exception cref="ArgumentNullException"><paramref name="check"/> is null.</exception>
        /// <exception cref="ArgumentException">No action, or a context JSON cannot carry.</exception>
        /// <exception cref="ACTException">No decision could be had (see its subclasses).</exception>
        public Task<PermissionResult> CheckPermissionAsync(PermissionCheck check, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (check == null) throw new ArgumentNullException("check");
            if (string.IsNullOrEmpty(check.Action))
                throw new ArgumentException("PermissionCheck.Action is required, e.g. \"read:customer_profile\"", "check");
            if (Volatile.Read(ref disposed) != 0) throw new ObjectDisposedException("ACTClient");
            string body = JsonWriter.CheckBody(token, check); // throws ArgumentException for a bad Context
            return SendAsync(body, check.Action, cancellationToken);
        }

        private async Task<PermissionResult> SendAsync(string body, string action, CancellationToken cancellationToken)
        {
            var clock = Stopwatch.StartNew();
            using (var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                cts.CancelAfter(timeout);
                for (int attempt = 0; ; attempt++)
                {
                    ACTException failure;
                    try
                    {
                        using (var request = new HttpRequestMessage(HttpMethod.Post, checkUri))
                        {
                            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
                            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                            request.Headers.UserAgent.ParseAdd("act-sdk-dotnet/" + Version);
                            using (var response = await http.SendAsync(request, cts.Token).ConfigureAwait(false))
                            {
                                string text = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
                                failure = Interpret(response, text, action);
                                if (failure == null) return Decode(text, (int)response.StatusCode, action);
                                if (!(failure is ACTUnavailableException)) throw failure;
                            }
                        }
                    }
                    catch (HttpRequestException e)
                    {
                        failure = new ACTUnavailableException(
                            "ACT sidecar at " + BaseUrl + " unavailable: " + Innermost(e).Message, null, 0, e);
                    }
                    catch (OperationCanceledException e)
                    {
                        if (cancellationToken.IsCancellationRequested) throw;
                        throw new ACTTimeoutException(
                            "no answer from the ACT sidecar at " + BaseUrl + " within " + timeout.TotalSeconds + " s", e);
                    }
                    if (attempt >= maxRetries) throw failure;
                    // Full jitter, 50 ms doubling, capped at 1 s; no retry that would outlast the timeout.
                    if (jitter == null) jitter = new Random(Guid.NewGuid().GetHashCode());
                    var delay = TimeSpan.FromMilliseconds(jitter.NextDouble() * Math.Min(1000, 50 << attempt));
                    if (clock.Elapsed + delay >= timeout) throw failure;
                    try
                    {
                        await Task.Delay(delay, cts.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        if (cancellationToken.IsCancellationRequested) throw;
                        throw failure;
                    }
                }
            }
        }

        private static Exception Innermost(Exception e)
        {
            while (e.InnerException != null) e = e.InnerException;
            return e;
        }

        /// <summary>Null for a 200; otherwise the exception the answer means.</summary>
        private ACTException Interpret(HttpResponseMessage response, string text, string action)
        {
            int status = (int)response.StatusCode;
            if (status == 200) return null;
            var body = Wire.Read<ErrorBodyWire>(text);
            var err = body == null ? null : body.Error;
            string code = err == null ? null : err.Code;
            string message = err != null && !string.IsNullOrEmpty(err.Message)
                ? err.Message
                : "HTTP " + status + " " + response.ReasonPhrase;
            if (err != null && !string.IsNullOrEmpty(err.Field)) message += " (field: " + err.Field + ")";
            switch (status)
            {
                case 400:
                case 413:
                case 415:
                    return new ACTInvalidArgumentException(message, code ?? "INVALID_ARGUMENT", status, err == null ? null : err.Field);
                case 401:
                    return new ACTAuthenticationException(message, code, status);
                case 403:
                    return new ACTForbiddenException(message, code, status);
                case 503:
                    return new ACTUnavailableException("ACT sidecar at " + BaseUrl + " unavailable: " + message, code, status);
                default:
                    return new ACTException(message, code, status);
            }
        }

        private static PermissionResult Decode(string text, int status, string action)
        {
            var wire = Wire.Read<CheckResponseWire>(text);
            if (wire == null || !(wire.Allowed is bool) || wire.Decision == null)
                throw new ACTProtocolException("the sidecar's answer is not a decision", status);
            if (wire.Action != null && wire.Action != action)
                throw new ACTProtocolException("the sidecar answered for \"" + wire.Action + "\", not \"" + action + "\"", status);
            var result = Wire.ToResult(wire);
            if (result.Action == null) result.Action = action;
            return result;
        }

        /// <summary>Disposes the HttpClient this client made (not one passed in).</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) == 0 && ownsHttp) http.Dispose();
        }

        /// <summary>The sidecar's address; never the token.</summary>
        public override string ToString()
        {
            return "ACTClient(" + BaseUrl + ")";
        }
    }
}
