using ActorTrain.Cluster;
using System.CommandLine;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.Hosting;

/// <summary>
/// The console host a training program hands control to:
/// <c>seed</c> (coordinator, and trains unless actortrain.node.train = off),
/// <c>worker</c> (trains), and <c>local</c> (a seed and workers as separate processes on loopback).
/// Exit codes: <see cref="ExitCodes"/>. This host is the one that ends the process when a node
/// will not shut down (<see cref="NodeHostServices.ShutdownOverdue"/>).
/// </summary>
public static class ActorTrainHost
{
    public static int Run(string[] args, TrainingJob job)
    {
        var root = new RootCommand($"ActorTrain: data-parallel training of \"{job.Name}\" on an Akka.NET cluster");

        var seedOptions = new NodeOptions();
        var noTrain = new Option<bool>("--no-train") { Description = "Host only the coordinator; do not train on this node" };
        var seed = new Command("seed", "Start the seed node: it hosts the coordinator and, by default, trains too");
        seedOptions.AddTo(seed, includeClusterAddress: true);
        seed.Add(noTrain);
        seed.SetAction(r => Guard(() => NodeRunner.Run(job, NodeRole.Seed, r.GetValue(seedOptions.Config),
            With(seedOptions.Overrides(r), r.GetValue(noTrain) ? "actortrain.node.train = off" : null), ConsoleNodeServices.Create())));

        var workerOptions = new NodeOptions();
        var worker = new Command("worker", "Start a worker node that joins the seed nodes and trains");
        workerOptions.AddTo(worker, includeClusterAddress: true);
        worker.SetAction(r => Guard(() => NodeRunner.Run(job, NodeRole.Worker, r.GetValue(workerOptions.Config), workerOptions.Overrides(r), ConsoleNodeServices.Create())));

        var localOptions = new NodeOptions();
        var nodes = new Option<int>("--nodes") { Description = "Number of node processes (one seed, the rest workers)", DefaultValueFactory = _ => 2 };
        var local = new Command("local", "Train on this machine: a seed and N-1 workers as separate processes on 127.0.0.1");
        local.Add(nodes);
        localOptions.AddTo(local, includeClusterAddress: false);
        local.Validators.Add(r =>
        {
            if (r.GetResult(nodes) is { Tokens: [var token] } && int.TryParse(token.Value, System.Globalization.CultureInfo.InvariantCulture, out var v) && (v < 1 || v > 64))
                r.AddError($"--nodes: must be between 1 and 64, got {v}");
        });
        local.SetAction(r => Guard(() => LocalLauncher.Run(r.GetValue(nodes), r.GetValue(localOptions.Config), localOptions.Overrides(r, includeSet: false),
            r.GetValue(localOptions.TrainersPerNode) ?? 1, localOptions.SetArguments(r))));

        var statusSeed = new Option<string>("--seed-node") { Description = "Address of a seed node, host:port (as on seed and worker)", Required = true };
        var statusHost = new Option<string>("--hostname") { Description = "This machine's address as the seed can reach it", DefaultValueFactory = _ => "127.0.0.1" };
        var statusTimeout = new Option<int>("--timeout") { Description = "Seconds to wait for an answer", DefaultValueFactory = _ => 10 };
        var statusConfig = new Option<string?>("--config") { Description = "A HOCON file whose actortrain.tls keys reach a TLS cluster (e.g. the nodes' config)" };
        var status = new Command("status", "Ask a running cluster what it is doing: generation, nodes, progress, slow or late ranks");
        status.Add(statusSeed);
        status.Add(statusHost);
        status.Add(statusTimeout);
        status.Add(statusConfig);
        status.SetAction(r => Guard(() => StatusCommand.Run(r.GetValue(statusSeed)!, r.GetValue(statusHost)!, TimeSpan.FromSeconds(Math.Max(1, r.GetValue(statusTimeout))),
            r.GetValue(statusConfig))));

        root.Add(seed);
        root.Add(status);
        root.Add(worker);
        root.Add(local);

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors) Console.Error.WriteLine($"error: {error.Message}");
            Console.Error.WriteLine("Run with --help for usage.");
            return ExitCodes.BadConfiguration;
        }
        return parsed.Invoke();
    }

    private static List<string> With(List<string> lines, string? extra)
    {
        if (extra is not null) lines.Add(extra);
        return lines;
    }

    private static int Guard(Func<int> run)
    {
        try
        {
            return run();
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.BadConfiguration;
        }
    }
}
