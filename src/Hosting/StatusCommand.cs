using ActorTrain.Cluster;
using System.Globalization;
using System.Text;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.Hosting;

/// <summary>
/// <c>status --seed-node HOST:PORT [--config FILE]</c>: asks a running cluster's coordinator what it is
/// doing, as a cluster client (through the seed's receptionist), without joining the cluster. A
/// TLS cluster is reached with the <c>actortrain.tls</c> keys of the <c>--config</c> file (the
/// nodes' own config, or one with just those keys): the client then runs the nodes' remoting TLS.
/// A cluster secret comes from the same file or from ACTORTRAIN_CLUSTER_SECRET.
/// </summary>
internal static class StatusCommand
{
    public static int Run(string seed, string hostname, TimeSpan timeout, string? configFile = null)
    {
        // The config file (when given) and ACTORTRAIN_CLUSTER_SECRET give the TLS keys and the cluster secret.
        var settings = ConfigLoader.Load(configFile, "", "status", []).Settings;
        var tls = configFile is null ? TlsSettings.Disabled : settings.Tls;
        try
        {
            var status = StatusClient.AskAsync(NodeOptions.SeedAddress(seed), hostname, tls, timeout, settings.ClusterSecret).GetAwaiter().GetResult();
            Console.Write(Format(status));
            return ExitCodes.Done;
        }
        catch (SettingsException e)
        {
            throw new UsageException($"{configFile}: {e.Message}");
        }
        catch (StatusTlsException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.NodeFailed;
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            var hint = tls.Enabled
                ? $" (TLS is on from {configFile}; does the cluster run TLS with the same CA?)"
                : " (if the cluster runs TLS, give --config with its actortrain.tls settings)";
            hint += settings.ClusterSecret.Enabled
                ? $" (a cluster secret is set: is it the cluster's?)"
                : $" (if the cluster has a cluster secret, give it in --config or {ClusterSecretSettings.EnvironmentVariable})";
            Console.Error.WriteLine($"error: no coordinator answered at {seed} within {timeout.TotalSeconds:0} s " +
                "(is the seed node running at --seed-node, and is this machine reachable from it at --hostname?)" + hint);
            return ExitCodes.NodeFailed;
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
        if (s.Straggler.Length > 0) text.AppendLine($"straggler: {s.Straggler}");
        if (s.LateRanks.Length == 0) text.AppendLine("late on the current step: none");
        foreach (var l in s.LateRanks)
            text.AppendLine(string.Create(c, $"late on the current step: rank {l.Rank} on {l.NodeName}, at step {l.Step} ({l.StepsBehind} behind), in its step for {l.CurrentStepMs / 1000:F1} s"));
        return text.ToString();
    }
}
