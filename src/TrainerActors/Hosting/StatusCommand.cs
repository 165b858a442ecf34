using System.Globalization;
using System.Text;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Configuration;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>
/// <c>status --seed HOST:PORT</c>: asks a running cluster's coordinator what it is doing, as a
/// cluster client (through the seed's receptionist), without joining the cluster.
/// </summary>
public static class StatusCommand
{
    public const string CoordinatorServicePath = "/user/coordinator-proxy";

    public static int Run(string seed, string hostname, TimeSpan timeout)
    {
        var contact = $"{NodeOptions.SeedAddress(seed)}/system/receptionist";
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = {{ConfigLoader.Quote(hostname)}}, port = 0 }
            akka.cluster.client.initial-contacts = [{{ConfigLoader.Quote(contact)}}]
            akka.loglevel = ERROR
            akka.stdout-loglevel = OFF
            """).WithFallback(ActorTrainSettings.DefaultConfig());
        using var system = ActorSystem.Create("actortrain-status", Cluster.Hosting.ClusterBootstrap.WithClusterToolsDefaults(config));
        try
        {
            var client = system.ActorOf(ClusterClient.Props(ClusterClientSettings.Create(system)), "client");
            var status = client.Ask<ClusterStatus>(new ClusterClient.Send(CoordinatorServicePath, new GetStatus(Guid.NewGuid().ToString("N")), localAffinity: true), timeout)
                .GetAwaiter().GetResult();
            Console.Write(Format(status));
            return 0;
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            Console.Error.WriteLine($"error: no coordinator answered at {seed} within {timeout.TotalSeconds:0} s " +
                "(is the seed node running, and is this machine reachable from it at --hostname?)");
            return 1;
        }
        finally
        {
            system.Terminate().Wait(TimeSpan.FromSeconds(5));
        }
    }

    /// <summary>The status as a person reads it.</summary>
    public static string Format(ClusterStatus s)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine(string.Create(c, $"job {s.JobId}: {s.Phase}, generation {s.Generation}, epoch {s.Epoch}/{s.Epochs}, world size {s.WorldSize}, {s.RegisteredNodes} node(s) registered (min {s.MinNodes})"));
        var rows = s.Nodes.Select(n => new[]
        {
            n.NodeName, n.Address,
            n.FirstRank < 0 ? "-" : string.Create(c, $"{n.FirstRank}..{n.FirstRank + n.TrainerCount - 1}"),
            string.Join(",", n.Devices),
            n.Step.ToString(c),
            n.StepsPerSecond.ToString("F1", c),
            n.SecondsSinceReport < 0 ? "never" : string.Create(c, $"{n.SecondsSinceReport:F1} s ago"),
        }).Prepend(["node", "address", "ranks", "devices", "step", "steps/s", "last report"]).ToList();
        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var row in rows)
            text.AppendLine(string.Join("  ", row.Select((cell, i) => cell.PadRight(widths[i]))).TrimEnd());
        text.AppendLine(s.SlowestRank < 0
            ? "slowest rank: not known yet"
            : string.Create(c, $"slowest rank (recent compute per step): {s.SlowestRank}, {s.SlowestComputeMs:F1} ms"));
        if (s.LateRanks.Length == 0) text.AppendLine("late on the current step: none");
        foreach (var l in s.LateRanks)
            text.AppendLine(string.Create(c, $"late on the current step: rank {l.Rank} on {l.NodeName}, at step {l.Step} ({l.StepsBehind} behind), in its step for {l.CurrentStepMs / 1000:F1} s"));
        return text.ToString();
    }
}
