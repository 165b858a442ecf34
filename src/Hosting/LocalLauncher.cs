using ActorTrain.Cluster;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using ActorTrain.TrainerActors.Reporting;
using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.Hosting;

/// <summary>
/// <c>local --nodes N</c>: a seed and N-1 workers, each a separate OS process of this same
/// program, talking Akka remoting over 127.0.0.1 on free ports. Their output is prefixed with
/// the node name. The seed (node0) holds the coordinator and decides the run: the launcher
/// returns its exit code once it ends, and stops the others 20 s after it, or all at once on
/// Ctrl+C. A worker that dies does not end the run when the others can regroup without it.
/// </summary>
internal static class LocalLauncher
{
    /// <param name="overrides">The launcher's own flags as HOCON lines, passed on as the same flags.</param>
    /// <param name="setArguments">The <c>--set key=value</c> arguments, passed on to every node as given.</param>
    public static int Run(int nodes, string? configFile, IReadOnlyList<string> overrides, int trainersPerNode, IReadOnlyList<string>? setArguments = null)
    {
        if (configFile is not null && !File.Exists(configFile)) throw new UsageException($"{configFile}: config file not found");
        var ports = FreeLoopbackPorts(nodes);
        var seedAddress = $"127.0.0.1:{ports[0]}";
        var noProgress = overrides.Contains("actortrain.progress-bar = off");
        using var display = ProgressSinks.ForConsole(noProgress);
        // With a live bar, the launcher draws it for the whole run from node0's (rank 0's)
        // progress events, and prints every node's other lines above it.
        var live = display is LiveProgressSink;
        void Print(string line) => display.Report(ProgressEvent.Line(line));
        Print($"local: {nodes} node process(es) x {trainersPerNode} trainer(s), seed at {seedAddress}");

        var children = new List<(string Name, Process Process)>();
        using var interrupted = new ManualResetEventSlim();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; interrupted.Set(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            for (var i = 0; i < nodes; i++)
            {
                var name = $"node{i}";
                var args = new List<string> { i == 0 ? "seed" : "worker" };
                if (configFile is not null) args.AddRange(["--config", configFile]);
                args.AddRange(["--hostname", "127.0.0.1", "--port", ports[i].ToString(CultureInfo.InvariantCulture),
                    "--seed-node", seedAddress, "--min-nodes", nodes.ToString(CultureInfo.InvariantCulture), "--node-name", name]);
                args.AddRange(OverridesAsArguments(overrides));
                foreach (var set in setArguments ?? []) args.AddRange(["--set", set]);
                children.Add((name, Start(name, args, renderProgress: live && i == 0, display)));
            }

            var exited = children.Select(c => c.Process.WaitForExitAsync()).ToArray();
            var seed = children[0];
            var seedEndedAt = DateTime.MaxValue;
            var reported = new HashSet<string>();
            while (true)
            {
                if (interrupted.IsSet)
                {
                    Print("local: interrupted; stopping all nodes");
                    KillAll(children);
                    return ExitCodes.Interrupted;
                }
                if (exited.All(t => t.IsCompleted)) break;
                foreach (var (name, process) in children.Where(c => c.Process.HasExited && !reported.Contains(c.Name)))
                {
                    reported.Add(name);
                    if (process.ExitCode != ExitCodes.Done && name != seed.Name)
                        Print($"local: {name} exited with code {process.ExitCode}; the run goes on without it if the others can regroup (actortrain.elastic)");
                }
                // The seed's coordinator decides the run: once it has ended, the others get 20 s to follow.
                if (seed.Process.HasExited && seedEndedAt == DateTime.MaxValue)
                {
                    seedEndedAt = DateTime.UtcNow;
                    if (seed.Process.ExitCode != ExitCodes.Done) Print($"local: {seed.Name} (the seed) exited with code {seed.Process.ExitCode}; the others get 20 s to end");
                }
                if (DateTime.UtcNow - seedEndedAt > TimeSpan.FromSeconds(20))
                {
                    KillAll(children);
                    break;
                }
                Task.WaitAny(exited, TimeSpan.FromMilliseconds(200));
            }
            foreach (var c in children) c.Process.WaitForExit();
            var codes = children.Select(c => c.Process.ExitCode).ToList();
            Print($"local: all nodes ended (exit codes {string.Join(", ", codes)})");
            return seed.Process.ExitCode;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            KillAll(children);
        }
    }

    /// <summary>The launcher passes its own options on, except those it sets per node.</summary>
    private static IEnumerable<string> OverridesAsArguments(IReadOnlyList<string> overrides)
    {
        foreach (var line in overrides)
        {
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            var key = line[..eq].Trim();
            var value = line[(eq + 1)..].Trim().Trim('"');
            var flag = key switch
            {
                "actortrain.training.epochs" => "--epochs",
                "actortrain.training.out-dir" => "--out",
                "actortrain.training.seed" => "--seed",
                "actortrain.checkpoint.resume-from" => "--resume",
                "actortrain.node.trainers-per-node" => "--trainers-per-node",
                "actortrain.node.intra-op-threads" => "--intra-op-threads",
                "actortrain.sync.compression" => "--compression",
                "actortrain.training.accumulation-steps" => "--accumulation-steps",
                "akka.loglevel" => "--log-level",
                "actortrain.progress-bar" => "--no-progress",
                _ => null,
            };
            if (flag == "--no-progress") yield return flag;
            else if (flag is not null) { yield return flag; yield return value; }
        }
    }

    private static Process Start(string name, IReadOnlyList<string> args, bool renderProgress, IProgressSink display)
    {
        var (file, prefix) = SelfCommand();
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in prefix.Concat(args)) psi.ArgumentList.Add(a);
        psi.Environment[NodeRunner.ExitWithParentVariable] = "1";
        psi.Environment[Cluster.Logging.NodeLog.PrefixedByLauncherVariable] = "1";
        if (renderProgress) psi.Environment[NodeRunner.ProgressProtocolVariable] = "1";
        var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        void OnLine(string? line)
        {
            if (line is null) return;
            if (ProgressProtocol.TryDecode(line, out var e) && e is not null)
                display.Report(e.Text is null ? e : e with { Text = $"[{name}] {e.Text}" });
            else
                display.Report(ProgressEvent.Line($"[{name}] {line}"));
        }
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>How to start this same program again: its apphost, or dotnet with its entry assembly.</summary>
    private static (string File, string[] Prefix) SelfCommand()
    {
        var processPath = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which program is running");
        var entry = Assembly.GetEntryAssembly()?.Location;
        var isDotnetHost = Path.GetFileNameWithoutExtension(processPath).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        return isDotnetHost && !string.IsNullOrEmpty(entry) ? (processPath, [entry]) : (processPath, []);
    }

    private static void KillAll(List<(string Name, Process Process)> children)
    {
        foreach (var (_, p) in children)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException) { }
        }
    }

    /// <summary>
    /// Ports free on 127.0.0.1 right now (held open together so they are distinct), lowest first:
    /// node0, the seed, gets the lowest address, so an even split of the nodes keeps its half
    /// (actortrain.elastic.quorum).
    /// </summary>
    public static int[] FreeLoopbackPorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        try
        {
            foreach (var l in listeners) l.Start();
            return listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).Order().ToArray();
        }
        finally
        {
            foreach (var l in listeners) l.Stop();
        }
    }
}
