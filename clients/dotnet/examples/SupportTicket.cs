// The product description's "C# (.NET)" example, as written there, inside the Main that
// mcs needs (it has no async Main or top-level statements), with CreateSupportTicket as a
// small stub. The token comes from ACT_TOKEN (the description shows "act_1a2b3c4d5e6f...");
// the sidecar from ACT_SIDECAR_HTTP_ADDR, else 127.0.0.1:8710 (where `npm start` runs it).
using System;
using System.Threading.Tasks;
using ActPlatform.SDK;

public static class SupportTicketExample
{
    // Stub: a real agent would call the ticketing system here.
    private static Task CreateSupportTicket(object ticketData)
    {
        Console.WriteLine("created support ticket: " + ticketData);
        return Task.FromResult(0);
    }

    private static async Task Run()
    {
        var ticketData = new { subject = "Order status", customerId = "customer_123" };

        var actClient = new ACTClient(Environment.GetEnvironmentVariable("ACT_TOKEN"));

        // Check permission before action
        var result = await actClient.CheckPermissionAsync(new PermissionCheck
        {
            Action = "create:support_ticket",
            Resource = "ticket_system",
            Context = new { userId = "user_123", reason = "Customer inquiry" }
        });

        if (result.Allowed)
        {
            // Permission granted - proceed
            await CreateSupportTicket(ticketData);
        }
        else
        {
            // Permission denied
            throw new UnauthorizedAccessException(result.Reason);
        }
    }

    public static void Main()
    {
        Run().GetAwaiter().GetResult();
    }
}
