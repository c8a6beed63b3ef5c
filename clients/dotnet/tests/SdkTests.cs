// Tests of ActPlatform.SDK, compiled with Mono's mcs and run by test/integration/sdk-dotnet.test.ts
// (npm test) against a live sidecar and control plane whose addresses and tokens it passes in the
// environment; plus a scripted HTTP server (HttpListener) for answers a correct sidecar never sends.
// No test framework is available here (no NuGet): a small runner prints one line per test and
// exits non-zero when any fails. Without the live environment it fails; it never skips.
using System;
using System.Collections.Generic;
using System.Dynamic;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using System.Web.Script.Serialization;
using ActPlatform.SDK;

internal static class SdkTests
{
    private static readonly Dictionary<string, string> E = new Dictionary<string, string>();
    private static readonly JavaScriptSerializer Json = new JavaScriptSerializer { MaxJsonLength = int.MaxValue };
    private static readonly HttpClient Admin = new HttpClient();

    private static readonly string[] EnvNames =
    {
        "ACT_SIDECAR_HTTP_ADDR", "ACT_TOKEN", "ACT_TEST_CLOSED_ADDR", "ACT_TEST_TICKETS_ONLY_TOKEN",
        "ACT_TEST_APPROVAL_TOKEN", "ACT_TEST_REVOCABLE_TOKEN", "ACT_TEST_REVOCABLE_TOKEN_ID",
        "ACT_TEST_CONTROL_PLANE_URL", "ACT_TEST_ADMIN_KEY",
    };

    public static int Main(string[] args)
    {
        var missing = EnvNames.Where(n => string.IsNullOrEmpty(Environment.GetEnvironmentVariable(n))).ToList();
        if (missing.Count > 0)
        {
            Console.Error.WriteLine("SdkTests needs a live sidecar and control plane; missing " + string.Join(", ", missing)
                + ". Run it through npm test (test/integration/sdk-dotnet.test.ts).");
            return 2;
        }
        foreach (var n in EnvNames) E[n] = Environment.GetEnvironmentVariable(n);
        Admin.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", E["ACT_TEST_ADMIN_KEY"]);

        var tests = new List<KeyValuePair<string, Func<Task>>>();
        Action<string, Func<Task>> T = (name, body) => tests.Add(new KeyValuePair<string, Func<Task>>(name, body));

        // ---- the description's example, live ----
        T("the description's check: allowed, with its anonymous Context audited as sent", async () =>
        {
            using (var actClient = new ACTClient(E["ACT_TOKEN"]))
            {
                var result = await actClient.CheckPermissionAsync(new PermissionCheck
                {
                    Action = "create:support_ticket",
                    Resource = "ticket_system",
                    Context = new { userId = "user_123", reason = "Customer inquiry" }
                });
                Assert(result.Allowed, "allowed: " + result);
                Eq(PermissionDecision.Allow, result.Decision);
                Eq("GRANTED", result.ReasonCode);
                Eq("Token valid, capability granted", result.Reason);
                Eq("create:support_ticket", result.Action);
                Assert(result.AuditId.StartsWith("audit_"), result.AuditId);
                Assert(result.ApprovalId == null, "no approval");
                Assert(result.PolicyRevision > 0, "revision");
                Assert(result.Details.PolicyId != null && result.Details.PolicyId.StartsWith("policy_"), "policy id");
                var rec = await AuditRecord(result.AuditId);
                Eq("create:support_ticket", (string)rec["action"]);
                Eq("ticket_system", (string)rec["resource"]);
                Eq("{\"userId\":\"user_123\",\"reason\":\"Customer inquiry\"}", Json.Serialize(rec["context"]));
            }
        });

        T("denied: Allowed false with the seed's reason and the missing capability", async () =>
        {
            using (var act = new ACTClient(E["ACT_TOKEN"]))
            {
                var result = await act.CheckPermissionAsync(new PermissionCheck { Action = "delete:customer_account", Resource = "customer_54321" });
                Assert(!result.Allowed, "denied");
                Eq(PermissionDecision.Deny, result.Decision);
                Eq("CAPABILITY_NOT_GRANTED", result.ReasonCode);
                Eq("Capability not granted in token", result.Reason);
                Eq("delete:customer_account", result.Details.MissingCapability);
                Eq("DENY", (string)(await AuditRecord(result.AuditId))["decision"]);
            }
        });

        T("base URL from ACT_SIDECAR_HTTP_ADDR (host:port) and explicitly", async () =>
        {
            using (var fromEnv = new ACTClient(E["ACT_TOKEN"]))
            using (var explicitUrl = new ACTClient(E["ACT_TOKEN"], "http://" + E["ACT_SIDECAR_HTTP_ADDR"]))
            {
                Eq("http://" + E["ACT_SIDECAR_HTTP_ADDR"] + "/", fromEnv.BaseUrl.ToString());
                Assert((await explicitUrl.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile" })).Allowed, "explicit");
                Assert(!fromEnv.ToString().Contains(E["ACT_TOKEN"]), "ToString shows no token");
            }
        });

        T("every kind of Context value arrives as sent", async () =>
        {
            dynamic expando = new ExpandoObject();
            expando.channel = "chat";
            var ctx = new Dictionary<string, object>
            {
                { "s", "x\"y\\z\n\u00e9\u4e2d\ud83d\ude00" }, { "i", 1200 }, { "l", 9007199254740992L }, { "f", 0.25 }, { "t", true },
                { "n", null }, { "list", new object[] { 1, "two", new { three = 3 } } }, { "nested", new { p = new { q = new int[0] } } },
                { "when", new DateTime(2025, 12, 31, 23, 59, 59, DateTimeKind.Utc) }, { "decision", PermissionDecision.Allow },
                { "expando", expando },
            };
            using (var act = new ACTClient(E["ACT_TOKEN"]))
            {
                var result = await act.CheckPermissionAsync(new PermissionCheck { Action = "read:order_history", Resource = "order_1", Context = ctx });
                Assert(result.Allowed, result.ToString());
                var rec = await AuditRecord(result.AuditId);
                Eq("{\"s\":\"x\\\"y\\\\z\\n\u00e9\u4e2d\ud83d\ude00\",\"i\":1200,\"l\":9007199254740992,\"f\":0.25,\"t\":true,\"n\":null,"
                    + "\"list\":[1,\"two\",{\"three\":3}],\"nested\":{\"p\":{\"q\":[]}},\"when\":\"2025-12-31T23:59:59.0000000Z\","
                    + "\"decision\":\"Allow\",\"expando\":{\"channel\":\"chat\"}}", Json.Serialize(rec["context"]));
            }
        });

        T("a token without the capability is denied; with it, allowed", async () =>
        {
            using (var act = new ACTClient(E["ACT_TEST_TICKETS_ONLY_TOKEN"]))
            {
                Assert(!(await act.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile" })).Allowed, "denied");
                Assert((await act.CheckPermissionAsync(new PermissionCheck { Action = "create:support_ticket", Resource = "ticket_system" })).Allowed, "allowed");
            }
        });

        // ---- never Allowed on an error (live) ----
        T("malformed and forged tokens are denies, not errors", async () =>
        {
            string t = E["ACT_TOKEN"];
            string forged = t.Substring(0, t.Length - 4) + (t.EndsWith("AAAA") ? "BBBB" : "AAAA");
            foreach (var pair in new[] { new[] { "act_1a2b3c4d5e6f...", "MALFORMED_TOKEN" }, new[] { forged, "BAD_SIGNATURE" } })
            {
                using (var act = new ACTClient(pair[0]))
                {
                    var r = await act.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile" });
                    Assert(!r.Allowed, "denied");
                    Eq(pair[1], r.ReasonCode);
                }
            }
        });

        T("requests the sidecar refuses throw ACTInvalidArgumentException naming the field", async () =>
        {
            using (var act = new ACTClient(E["ACT_TOKEN"]))
            {
                var cases = new[]
                {
                    new KeyValuePair<string, PermissionCheck>("action", new PermissionCheck { Action = "read:" + new string('x', 300) }),
                    new KeyValuePair<string, PermissionCheck>("resource", new PermissionCheck { Action = "read:customer_profile", Resource = new string('c', 2000) }),
                    new KeyValuePair<string, PermissionCheck>("context", new PermissionCheck { Action = "read:customer_profile", Context = new { blob = new string('x', 20000) } }),
                };
                foreach (var c in cases)
                {
                    var e = await Throws<ACTInvalidArgumentException>(() => act.CheckPermissionAsync(c.Value));
                    Eq(c.Key, e.Field);
                    Eq(400, e.StatusCode);
                }
            }
        });

        T("bad arguments throw before any call (live client)", async () =>
        {
            using (var act = new ACTClient(E["ACT_TOKEN"]))
            {
                await BadArgumentsThrowBeforeAnyCall(act);
            }
        });

        T("an unreachable sidecar throws ACTUnavailableException", async () =>
        {
            using (var act = new ACTClient(E["ACT_TOKEN"], "http://" + E["ACT_TEST_CLOSED_ADDR"]))
            {
                var e = await Throws<ACTUnavailableException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile" }));
                Assert(e.Message.Contains(E["ACT_TEST_CLOSED_ADDR"]), e.Message);
                Assert(!e.Message.Contains(E["ACT_TOKEN"]), "no token in the message");
            }
        });

        T("a revoked token is denied once the revocation arrives", async () =>
        {
            using (var act = new ACTClient(E["ACT_TEST_REVOCABLE_TOKEN"]))
            {
                Assert((await act.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile" })).Allowed, "before");
                var res = await Admin.PostAsync(E["ACT_TEST_CONTROL_PLANE_URL"] + "/api/tokens/" + E["ACT_TEST_REVOCABLE_TOKEN_ID"] + "/revoke",
                    new StringContent("{\"reason\":\"sdk test\"}", Encoding.UTF8, "application/json"));
                Eq(HttpStatusCode.OK, res.StatusCode);
                var r = await WaitUntil("TOKEN_REVOKED", async () =>
                {
                    var d = await act.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile" });
                    return d.ReasonCode == "TOKEN_REVOKED" ? d : null;
                });
                Assert(!r.Allowed, "revoked");
            }
        });

        T("approval: ApprovalRequired with an ApprovalId, then allowed once after a human approved", async () =>
        {
            using (var act = new ACTClient(E["ACT_TEST_APPROVAL_TOKEN"]))
            {
                Func<string, Task<PermissionResult>> ask = id => act.CheckPermissionAsync(new PermissionCheck
                {
                    Action = "create:transaction", Resource = "acct_9", Context = new { amount = 5000 }, ApprovalId = id,
                });
                var pending = await ask(null);
                Assert(!pending.Allowed, "pending");
                Eq(PermissionDecision.ApprovalRequired, pending.Decision);
                Eq("APPROVAL_REQUIRED_BY_POLICY", pending.ReasonCode);
                Assert(pending.ApprovalId != null && pending.ApprovalId.StartsWith("approval_"), "approval id");
                await WaitUntil("the approval at the control plane", async () =>
                {
                    var r = await Admin.GetAsync(E["ACT_TEST_CONTROL_PLANE_URL"] + "/api/approvals/" + pending.ApprovalId);
                    return r.StatusCode == HttpStatusCode.OK ? "ok" : null;
                });
                Assert(!(await ask(pending.ApprovalId)).Allowed, "not yet approved");
                var ok = await Admin.PostAsync(E["ACT_TEST_CONTROL_PLANE_URL"] + "/api/approvals/" + pending.ApprovalId + "/approve",
                    new StringContent("{\"comment\":\"fine\"}", Encoding.UTF8, "application/json"));
                Eq(HttpStatusCode.OK, ok.StatusCode);
                var allowed = await WaitUntil("ALLOW with the approval", async () =>
                {
                    var d = await ask(pending.ApprovalId);
                    return d.Decision != PermissionDecision.ApprovalRequired ? d : null;
                });
                Assert(allowed.Allowed, allowed.ToString());
                Assert(!(await ask(pending.ApprovalId)).Allowed, "once");
            }
        });

        T("one client shared by 50 concurrent checks", async () =>
        {
            using (var act = new ACTClient(E["ACT_TOKEN"]))
            {
                var results = await Task.WhenAll(Enumerable.Range(0, 50).Select(i =>
                    act.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile", Resource = "customer_" + i })));
                Assert(results.All(r => r.Allowed), "all allowed");
                Eq(50, results.Select(r => r.AuditId).Distinct().Count());
            }
        });

        // ---- a scripted server: answers a correct sidecar never sends ----
        T("the request: the seed's JSON, bearer token, no proxy detour", async () =>
        {
            using (var fake = new FakeSidecar())
            using (var act = new ACTClient("act_unit", fake.Url))
            {
                fake.Script(200, Allow("read:customer_profile"));
                var r = await act.CheckPermissionAsync(new PermissionCheck
                {
                    Action = "read:customer_profile", Resource = "customer_123",
                    Context = new { ip = "10.0.1.50", reason = "User inquiry" }, ApprovalId = "approval_1",
                });
                Assert(r.Allowed, "allowed");
                var req = fake.Requests.Single();
                Eq("POST /api/enforcement/check", req.Method + " " + req.Path);
                Eq("Bearer act_unit", req.Authorization);
                Assert(req.ContentType.StartsWith("application/json"), req.ContentType);
                Eq("{\"token\":\"act_unit\",\"action\":\"read:customer_profile\",\"resource\":\"customer_123\","
                    + "\"context\":{\"ip\":\"10.0.1.50\",\"reason\":\"User inquiry\"},\"approval_id\":\"approval_1\"}", req.Body);
            }
        });

        T("bad arguments throw before any call (scripted server sees nothing)", async () =>
        {
            using (var fake = new FakeSidecar())
            using (var act = new ACTClient("act_unit", fake.Url))
            {
                await BadArgumentsThrowBeforeAnyCall(act);
                Eq(0, fake.Requests.Count);
            }
        });

        T("inconsistent or unknown answers are never Allowed", async () =>
        {
            var cases = new[]
            {
                "{\"allowed\":true,\"action\":\"read:x\",\"decision\":\"DENY\"}",
                "{\"allowed\":true,\"action\":\"read:x\",\"decision\":\"APPROVAL_REQUIRED\"}",
                "{\"allowed\":true,\"action\":\"read:x\",\"decision\":\"MAYBE\"}",
                "{\"allowed\":false,\"action\":\"read:x\",\"decision\":\"ALLOW\"}",
                "{\"allowed\":true,\"action\":\"read:x\",\"decision\":\"allow\"}",
            };
            using (var fake = new FakeSidecar())
            using (var act = new ACTClient("act_unit", fake.Url))
            {
                foreach (var body in cases)
                {
                    fake.Script(200, body);
                    var r = await act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" });
                    Assert(!r.Allowed, body);
                    Assert(r.Decision != PermissionDecision.Allow, body);
                }
            }
        });

        T("answers that are not decisions throw ACTProtocolException", async () =>
        {
            var cases = new[]
            {
                "<html>proxy error</html>", "", "{}", "[true]", "{\"allowed\":true}", "{\"decision\":\"ALLOW\"}",
                "{\"allowed\":\"true\",\"decision\":\"ALLOW\"}", "{\"allowed\":true,\"decision\":\"ALLOW\"",
                "{\"allowed\":true,\"action\":\"delete:everything\",\"decision\":\"ALLOW\"}",
                "{\"allowed\":true,\"decision\":\"ALLOW\"}xyz", "{\"allowed\":false,\"decision\":\"ALLOW\",\"allowed\":true}",
                "{\"allowed\":1,\"decision\":\"ALLOW\"}", "{\"allowed\":{},\"decision\":\"ALLOW\"}",
            };
            using (var fake = new FakeSidecar())
            using (var act = new ACTClient("act_unit", fake.Url))
            {
                foreach (var body in cases)
                {
                    fake.Script(200, body);
                    await Throws<ACTProtocolException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" }), body);
                }
            }
        });

        T("HTTP errors are typed; only 503 and connection failures are retried, a bounded number of times", async () =>
        {
            using (var fake = new FakeSidecar())
            using (var act = new ACTClient("act_unit", fake.Url))
            {
                fake.Script(503, "{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"audit spool is full\"}}");
                var u = await Throws<ACTUnavailableException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" }));
                Assert(u.Message.Contains("audit spool is full"), u.Message);
                Eq(3, fake.Requests.Count); // 1 + MaxRetries (2)

                fake.Requests.Clear();
                fake.Script(503, "{}", 503, "{}", 200, Allow("read:x"));
                Assert((await act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" })).Allowed, "third time");
                Eq(3, fake.Requests.Count);

                var typed = new[]
                {
                    new KeyValuePair<int, Type>(400, typeof(ACTInvalidArgumentException)),
                    new KeyValuePair<int, Type>(413, typeof(ACTInvalidArgumentException)),
                    new KeyValuePair<int, Type>(401, typeof(ACTAuthenticationException)),
                    new KeyValuePair<int, Type>(403, typeof(ACTForbiddenException)),
                    new KeyValuePair<int, Type>(404, typeof(ACTException)),
                    new KeyValuePair<int, Type>(500, typeof(ACTException)),
                    new KeyValuePair<int, Type>(429, typeof(ACTException)),
                };
                foreach (var c in typed)
                {
                    fake.Requests.Clear();
                    fake.Script(c.Key, "{\"error\":{\"code\":\"X\",\"message\":\"scripted\",\"field\":\"action\"}}");
                    var e = await Throws<ACTException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" }));
                    Eq(c.Value, e.GetType());
                    Eq(c.Key, e.StatusCode);
                    Eq(1, fake.Requests.Count);
                }
                act.MaxRetries = 0;
                fake.Requests.Clear();
                fake.Script(503, "{}");
                await Throws<ACTUnavailableException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" }));
                Eq(1, fake.Requests.Count);
            }
        });

        T("no answer within Timeout throws ACTTimeoutException (an ACTUnavailableException)", async () =>
        {
            using (var fake = new FakeSidecar())
            using (var act = new ACTClient("act_unit", fake.Url) { Timeout = TimeSpan.FromMilliseconds(300) })
            {
                fake.Delay = TimeSpan.FromSeconds(2);
                fake.Script(200, Allow("read:x"));
                var e = await Throws<ACTTimeoutException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" }));
                Assert(e is ACTUnavailableException, "subclass");
            }
        });

        T("the caller's cancellation is an OperationCanceledException, not a result", async () =>
        {
            using (var fake = new FakeSidecar())
            using (var act = new ACTClient("act_unit", fake.Url))
            using (var cts = new CancellationTokenSource())
            {
                fake.Delay = TimeSpan.FromSeconds(2);
                fake.Script(200, Allow("read:x"));
                cts.CancelAfter(100);
                await Throws<OperationCanceledException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:x" }, cts.Token));
            }
        });

        T("configuration: token required, base URL validated, disposed client refuses", async () =>
        {
            ThrowsNow<ArgumentException>(() => new ACTClient((string)null));
            ThrowsNow<ArgumentException>(() => new ACTClient(""));
            ThrowsNow<ArgumentException>(() => new ACTClient("act_x", "ftp://127.0.0.1:8710"));
            ThrowsNow<ArgumentException>(() => new ACTClient("act_x", "not a url at all"));
            ThrowsNow<ArgumentOutOfRangeException>(() => new ACTClient("act_x", null) { Timeout = TimeSpan.Zero });
            ThrowsNow<ArgumentOutOfRangeException>(() => new ACTClient("act_x", null) { MaxRetries = -1 });
            Eq("http://127.0.0.1:9/base/", new ACTClient("act_x", "http://127.0.0.1:9/base").BaseUrl.ToString());
            var disposed = new ACTClient("act_x", "http://127.0.0.1:9");
            disposed.Dispose();
            ThrowsNow<ObjectDisposedException>(() => disposed.CheckPermissionAsync(new PermissionCheck { Action = "read:x" }));
            await Task.FromResult(0);
        });

        return Run(tests);
    }

    // ---- shared checks ----

    private static async Task BadArgumentsThrowBeforeAnyCall(ACTClient act)
    {
        ThrowsNow<ArgumentNullException>(() => act.CheckPermissionAsync(null));
        ThrowsNow<ArgumentException>(() => act.CheckPermissionAsync(new PermissionCheck()));
        ThrowsNow<ArgumentException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "" }));
        var cyclic = new Dictionary<string, object>();
        cyclic["self"] = cyclic;
        var contexts = new object[]
        {
            "ip=10.0.1.50", 42, true, new[] { "not", "an", "object" }, new List<object> { 1 },
            new { amount = double.NaN }, new { amount = double.PositiveInfinity }, new { id = long.MaxValue },
            new { callback = (Func<int>)(() => 1) }, new Dictionary<int, string> { { 1, "int key" } }, cyclic,
            new { bad = "\ud800" },
        };
        foreach (var ctx in contexts)
        {
            var c = ctx;
            ThrowsNow<ArgumentException>(() => act.CheckPermissionAsync(new PermissionCheck { Action = "read:customer_profile", Context = c }),
                c.GetType().Name);
        }
        await Task.FromResult(0);
    }

    private static string Allow(string action)
    {
        return "{\"allowed\":true,\"action\":\"" + action + "\",\"reason\":\"Token valid, capability granted\",\"audit_id\":\"audit_fake\","
            + "\"decision\":\"ALLOW\",\"reason_code\":\"GRANTED\",\"details\":{\"policy_id\":\"policy_fake\"},\"policy_revision\":7}";
    }

    private static async Task<Dictionary<string, object>> AuditRecord(string auditId)
    {
        return await WaitUntil("audit record " + auditId, async () =>
        {
            var text = await Admin.GetStringAsync(E["ACT_TEST_CONTROL_PLANE_URL"] + "/api/audit/export?format=ndjson");
            foreach (var line in text.Split('\n'))
            {
                if (line.Trim().Length == 0) continue;
                var rec = Json.Deserialize<Dictionary<string, object>>(line);
                if ((string)rec["audit_id"] == auditId) return rec;
            }
            return null;
        });
    }

    private static async Task<T> WaitUntil<T>(string what, Func<Task<T>> fn) where T : class
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        for (;;)
        {
            var v = await fn();
            if (v != null) return v;
            if (DateTime.UtcNow > deadline) throw new Exception("timed out waiting for " + what);
            await Task.Delay(50);
        }
    }

    // ---- the runner and assertions ----

    private static int Run(List<KeyValuePair<string, Func<Task>>> tests)
    {
        int passed = 0, failed = 0;
        foreach (var t in tests)
        {
            try
            {
                t.Value().GetAwaiter().GetResult();
                passed++;
                Console.WriteLine("ok - " + t.Key);
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine("not ok - " + t.Key);
                Console.WriteLine("  " + e.ToString().Replace("\n", "\n  "));
            }
        }
        Console.WriteLine(string.Format("{0} passed, {1} failed", passed, failed));
        return failed == 0 ? 0 : 1;
    }

    private static void Assert(bool condition, string what)
    {
        if (!condition) throw new Exception("assertion failed: " + what);
    }

    private static void Eq<T>(T expected, T actual)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
            throw new Exception("expected " + expected + ", got " + actual);
    }

    private static async Task<TEx> Throws<TEx>(Func<Task> call, string what = "") where TEx : Exception
    {
        try
        {
            await call();
        }
        catch (TEx e)
        {
            return e;
        }
        catch (Exception e)
        {
            throw new Exception("expected " + typeof(TEx).Name + " " + what + ", got " + e.GetType().Name + ": " + e.Message, e);
        }
        throw new Exception("expected " + typeof(TEx).Name + " " + what + ", nothing was thrown");
    }

    /// <summary>Asserts the call throws synchronously (before any Task, so before any request).</summary>
    private static void ThrowsNow<TEx>(Func<object> call, string what = "") where TEx : Exception
    {
        try
        {
            call();
        }
        catch (TEx)
        {
            return;
        }
        catch (Exception e)
        {
            throw new Exception("expected " + typeof(TEx).Name + " " + what + ", got " + e.GetType().Name + ": " + e.Message, e);
        }
        throw new Exception("expected " + typeof(TEx).Name + " " + what + " thrown at once, nothing was thrown");
    }
}

/// <summary>A scripted HTTP server on a loopback port: plays (status, body) pairs in order, the last one repeated.</summary>
internal sealed class FakeSidecar : IDisposable
{
    internal sealed class Seen
    {
        public string Method, Path, Authorization, ContentType, Body;
    }

    private readonly HttpListener listener = new HttpListener();
    private readonly List<KeyValuePair<int, string>> script = new List<KeyValuePair<int, string>>();
    private readonly Thread thread;
    public readonly List<Seen> Requests = new List<Seen>();
    public TimeSpan Delay = TimeSpan.Zero;
    public readonly string Url;

    public FakeSidecar()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        Url = "http://127.0.0.1:" + port + "/";
        listener.Prefixes.Add(Url);
        listener.Start();
        thread = new Thread(Serve) { IsBackground = true };
        thread.Start();
    }

    public void Script(params object[] pairs)
    {
        lock (script)
        {
            script.Clear();
            for (int i = 0; i < pairs.Length; i += 2) script.Add(new KeyValuePair<int, string>((int)pairs[i], (string)pairs[i + 1]));
        }
    }

    private void Serve()
    {
        while (listener.IsListening)
        {
            HttpListenerContext ctx;
            try { ctx = listener.GetContext(); }
            catch (Exception) { return; }
            ThreadPool.QueueUserWorkItem(_ => Answer(ctx));
        }
    }

    private void Answer(HttpListenerContext ctx)
    {
        try
        {
            string body;
            using (var reader = new System.IO.StreamReader(ctx.Request.InputStream, Encoding.UTF8)) body = reader.ReadToEnd();
            lock (Requests)
            {
                Requests.Add(new Seen
                {
                    Method = ctx.Request.HttpMethod, Path = ctx.Request.Url.AbsolutePath,
                    Authorization = ctx.Request.Headers["Authorization"], ContentType = ctx.Request.ContentType, Body = body,
                });
            }
            KeyValuePair<int, string> step;
            lock (script)
            {
                step = script.Count > 1 ? script[0] : script[0];
                if (script.Count > 1) script.RemoveAt(0);
            }
            if (Delay > TimeSpan.Zero) Thread.Sleep(Delay);
            var bytes = Encoding.UTF8.GetBytes(step.Value);
            ctx.Response.StatusCode = step.Key;
            ctx.Response.ContentType = "application/json";
            ctx.Response.ContentLength64 = bytes.Length;
            ctx.Response.OutputStream.Write(bytes, 0, bytes.Length);
            ctx.Response.Close();
        }
        catch (Exception)
        {
            // the client gave up (timeout tests): nothing to answer
        }
    }

    public void Dispose()
    {
        listener.Stop();
        listener.Close();
    }
}
