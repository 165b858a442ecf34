using System.Net;
using System.Net.Http;
using System.Net.Sockets;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// The health checks on Akka.Management's endpoint of real node processes: liveness and
/// readiness before the node has joined, while it trains, and once it has left.
/// </summary>
[Collection(ProcessCollection.Name)]
public class HealthEndpointTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(6);

    /// <summary>One GET: the status code and body, or null when nothing listens.</summary>
    internal static async Task<(HttpStatusCode Code, string Body)?> Get(int port, string path)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            using var response = await http.GetAsync($"http://127.0.0.1:{port}{path}");
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
        {
            return null;
        }
    }

    /// <summary>Polls <paramref name="path"/> until <paramref name="until"/> holds for an answer (null: nothing listens).</summary>
    private static async Task<(HttpStatusCode Code, string Body)?> PollUntil(int port, string path, Func<(HttpStatusCode Code, string Body)?, bool> until,
        TimeSpan timeout, NodeProcess node, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        (HttpStatusCode, string)? last = null;
        while (DateTime.UtcNow < deadline)
        {
            last = await Get(port, path);
            if (until(last)) return last;
            await Task.Delay(200);
        }
        throw new TimeoutException($"{node.Name}: {path} never {what} within {timeout.TotalSeconds:0} s; last answer {last?.ToString() ?? "none (nothing listens)"}\n{node.Tail()}");
    }

    [Fact]
    public async Task Liveness_and_readiness_answer_before_joining_while_training_and_after_leaving()
    {
        var outDir = Repo.TempDir();
        var seedPort = NodeProcess.FreePort();
        var seedManagement = NodeProcess.FreePort();
        var workerManagement = NodeProcess.FreePort();
        var seedAddress = $"127.0.0.1:{seedPort}";
        string[] Management(int port) => ["--set", "actortrain.management.enabled=on", "--set", $"akka.management.http.port={port}"];

        // The worker starts first: its seed is not there yet, so it is alive but not a member.
        using var worker = NodeProcess.Start("worker", ["worker", "--seed-node", seedAddress, "--node-name", "worker", "--out", outDir,
            "--intra-op-threads", "1", "--no-progress", .. Management(workerManagement)]);
        var alive = await PollUntil(workerManagement, "/health/alive", a => a is not null, TimeSpan.FromSeconds(90), worker, "answered");
        Assert.Equal(HttpStatusCode.OK, alive!.Value.Code);
        Assert.Contains("alive", alive.Value.Body);
        var before = await Get(workerManagement, "/health/ready");
        Assert.NotNull(before);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, before.Value.Code);
        Assert.Contains("not a member of the cluster yet", before.Value.Body);

        // Two epochs leave time to see it ready while it trains.
        using var seed = NodeProcess.Start("seed", ["seed", "--port", seedPort.ToString(), "--seed-node", seedAddress, "--min-nodes", "2",
            "--epochs", "2", "--out", outDir, "--intra-op-threads", "1", "--no-progress", .. Management(seedManagement)]);
        var ready = await PollUntil(workerManagement, "/health/ready", a => a?.Code == HttpStatusCode.OK, TimeSpan.FromSeconds(120), worker, "became ready");
        Assert.Matches(@"ready: ranks \d\.\.\d of generation \d+", ready!.Value.Body);
        var seedReady = await PollUntil(seedManagement, "/health/ready", a => a?.Code == HttpStatusCode.OK, TimeSpan.FromSeconds(30), seed, "became ready");
        Assert.Contains("ready: ranks", seedReady!.Value.Body);
        Assert.Equal(HttpStatusCode.OK, (await Get(seedManagement, "/health/alive"))!.Value.Code);

        // SIGTERM: the worker leaves the run at a step boundary, then the cluster, then exits.
        worker.Signal("TERM");
        var left = await PollUntil(workerManagement, "/health/ready", a => a?.Code != HttpStatusCode.OK, TimeSpan.FromSeconds(60), worker, "stopped being ready");
        if (left is { } answer) Assert.Equal(HttpStatusCode.ServiceUnavailable, answer.Code);
        Assert.Equal(143, await worker.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Null(await Get(workerManagement, "/health/alive"));

        // The seed trains on alone and ends the run.
        Assert.Equal(0, await seed.WaitForExitAsync(RunTimeout));
        Assert.Null(await Get(seedManagement, "/health/ready"));
    }
}
