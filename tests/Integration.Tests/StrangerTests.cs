using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Integration.Tests.TestBed;
using Akka.Actor;
using Akka.Configuration;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// Strangers on the test bed's network, without TLS: a node with the wrong cluster secret, and a
/// process that sends gradient chunks it has no business sending. The nodes are real processes;
/// the figures come from their metrics.
/// </summary>
[Collection(ProcessCollection.Name)]
public class StrangerTests(ITestOutputHelper output)
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(6);
    private const string Port = "4053";

    private static NodeProcess Start(NetnsTestBed bed, int host, string role, string secret, int epochs, params string[] extra) =>
        bed.Start(host, $"h{host}", new Dictionary<string, string> { ["ACTORTRAIN_CLUSTER_SECRET"] = secret },
            [role, "--hostname", bed.Ip(host), "--port", Port, "--seed-node", $"{bed.Ip(1)}:{Port}", "--node-name", $"h{host}",
                "--out", Repo.TempDir(), "--intra-op-threads", "1", "--no-progress", "--epochs", epochs.ToString(), "--min-nodes", "2", .. extra]);

    /// <summary>The node's Prometheus text, fetched inside its host (the endpoint listens on that host's loopback).</summary>
    private static string Metrics(NetnsTestBed bed, int host, NodeProcess node)
    {
        var port = new Uri(Regex.Match(node.Output, @"metrics at (http://\S+)").Groups[1].Value).Port;
        var (code, text) = bed.Exec(host, "bash", "-c", $"exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
        Assert.Equal(0, code);
        return text;
    }

    private static double Sample(string metrics, string name, string label) =>
        metrics.Split('\n').Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Sum();

    [TestBedFact]
    public async Task Strangers_a_node_with_the_wrong_secret_cannot_register_and_the_run_completes_without_it()
    {
        using var bed = NetnsTestBed.Create(3);
        var seed = Start(bed, 1, "seed", "the-right-secret", 4);
        var worker = Start(bed, 2, "worker", "the-right-secret", 4);
        var stranger = Start(bed, 3, "worker", "a-wrong-secret", 4, "--config", WriteConfig("actortrain.startup-timeout = 25s"));

        Assert.True(await seed.WaitForExitAsync(RunTimeout) == 0, seed.Tail());
        Assert.Equal(0, await worker.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        // Its registration never reached the coordinator: nobody answered it.
        Assert.Equal(2, await stranger.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("no coordinator answered", stranger.Output);
        Assert.DoesNotContain("h3", Regex.Match(seed.Output, "Generation 1: world size .*").Value);
        Assert.Matches("Generation 1: world size 2 ", seed.Output);
    }

    [TestBedFact]
    public async Task Strangers_forged_and_flooded_gradient_chunks_are_dropped_counted_and_do_not_grow_the_node()
    {
        using var bed = NetnsTestBed.Create(2);
        var seed = Start(bed, 1, "seed", "s3cret", 6, "--config", WriteConfig("actortrain.sync.transport = akka"));
        var worker = Start(bed, 2, "worker", "s3cret", 6, "--config", WriteConfig("actortrain.sync.transport = akka"));
        await seed.WaitForLineAsync("[1,    20] loss:", RunTimeout);
        var before = Metrics(bed, 2, worker);
        var rssBefore = Sample(before, "actortrain_process_resident_bytes", "node=");

        // A process of its own on the bed's bridge address, speaking Akka remoting with ActorTrain's serializers.
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = "{{bed.BridgeIp}}", port = 0 }
            akka.loglevel = ERROR
            """).WithFallback(ActorTrainSettings.DefaultConfig());
        using var stranger = ActorSystem.Create("actortrain", config);
        var endpoint = await stranger.ActorSelection($"akka.tcp://actortrain@{bed.Ip(2)}:{Port}/user/node/actortrain-endpoint")
            .ResolveOne(TimeSpan.FromSeconds(20));
        var me = stranger.ActorOf(Props.Empty, "stranger");
        var floats = new float[16 * 1024]; // 64 KiB, the chunk size
        const int Chunks = 3000;           // about 200 MB
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < Chunks; i++)
        {
            // Claims to be rank 0's node: for the current generation, the next one, and far future ones.
            var generation = i < 1000 ? 1 : i < 2000 ? 2 : 1000 + i;
            endpoint.Tell(new GradientChunk(generation, 5 + i, 0, 0, 0, i, 0, floats), me);
            if (i % 200 == 199) await Task.Delay(50);
        }
        var floodTime = clock.Elapsed;
        await Task.Delay(TimeSpan.FromSeconds(5));

        var after = Metrics(bed, 2, worker);
        var wrongSender = Sample(after, "actortrain_dropped_messages_total", "reason=\"wrong_sender\"") -
                          Sample(before, "actortrain_dropped_messages_total", "reason=\"wrong_sender\"");
        var future = Sample(after, "actortrain_dropped_messages_total", "reason=\"future_generation\"") -
                     Sample(before, "actortrain_dropped_messages_total", "reason=\"future_generation\"");
        var rssAfter = Sample(after, "actortrain_process_resident_bytes", "node=");
        Assert.True(wrongSender >= 2000 * 0.95 && future >= 1000 * 0.95,
            $"of {Chunks} forged chunks, {wrongSender} counted as wrong_sender and {future} as future_generation\n{after}");
        Assert.True(rssAfter - rssBefore < 100e6, $"RSS grew {(rssAfter - rssBefore) / 1e6:F0} MB during a flood of {Chunks * floats.Length * 4 / 1e6:F0} MB");
        // Training was not disturbed: the run completes with equal replicas.
        Assert.True(await seed.WaitForExitAsync(RunTimeout) == 0, seed.Tail());
        Assert.Equal(0, await worker.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        output.WriteLine($"flood: {Chunks} chunks in {floodTime.TotalSeconds:F1}s, {wrongSender} dropped as wrong_sender, {future} as future_generation, RSS {rssBefore / 1e6:F0} -> {rssAfter / 1e6:F0} MB");
    }

    private static string WriteConfig(string hocon)
    {
        var path = Path.Combine(Repo.TempDir(), "test.conf");
        File.WriteAllText(path, hocon);
        return path;
    }
}
