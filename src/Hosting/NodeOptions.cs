using System.CommandLine;
using System.Globalization;
using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.Hosting;

/// <summary>The command-line options shared by <c>seed</c>, <c>worker</c> and <c>local</c>, turned into HOCON overrides.</summary>
internal sealed class NodeOptions
{
    public readonly Option<string?> Config = new("--config") { Description = "HOCON file with this node's settings (see hocon/)" };
    public readonly Option<string?> Hostname = new("--hostname") { Description = "Address to bind and advertise (akka.remote.dot-netty.tcp.hostname)" };
    public readonly Option<int?> Port = new("--port") { Description = "Port to bind (akka.remote.dot-netty.tcp.port; 0 = any free port)" };
    public readonly Option<string[]> SeedNodes = new("--seed-node") { Description = "Seed node address, host:port or akka.tcp://actortrain@host:port (repeatable)", AllowMultipleArgumentsPerToken = false };
    public readonly Option<int?> Epochs = new("--epochs") { Description = "Epochs to train (actortrain.training.epochs)" };
    public readonly Option<string?> Out = new("--out") { Description = "Output directory for model.pth and run-report.json (actortrain.training.out-dir)" };
    public readonly Option<int?> Seed = new("--seed") { Description = "Random seed for parameter init and shuffling (actortrain.training.seed)" };
    public readonly Option<int?> MinNodes = new("--min-nodes") { Description = "Nodes to wait for before training starts (actortrain.min-nodes)" };
    public readonly Option<int?> TrainersPerNode = new("--trainers-per-node") { Description = "CPU trainers in this node (actortrain.node.trainers-per-node)" };
    public readonly Option<int?> IntraOpThreads = new("--intra-op-threads") { Description = "Threads per trainer, 0 = cores shared among the trainers (actortrain.node.intra-op-threads)" };
    public readonly Option<bool> NoProgress = new("--no-progress") { Description = "Plain progress lines instead of a live bar (actortrain.progress-bar = off)" };
    public readonly Option<string?> LogLevel = new("--log-level") { Description = "Akka log level: DEBUG, INFO, WARNING or ERROR (akka.loglevel)" };
    public readonly Option<string?> Resume = new("--resume") { Description = "Start from the newest valid checkpoint in this directory (actortrain.checkpoint.resume-from)" };
    public readonly Option<string?> Compression = new("--compression") { Description = "Gradient chunks between nodes: none, fp16 or bf16 (actortrain.sync.compression)" };
    public readonly Option<int?> AccumulationSteps = new("--accumulation-steps") { Description = "Micro-batches per optimizer step (actortrain.training.accumulation-steps)" };
    public readonly Option<string?> NodeName = new("--node-name") { Description = "Name of this node in logs and reports (actortrain.node-name)" };
    public readonly Option<string[]> Set = new("--set")
    {
        Description = "Any setting, key=value (repeatable), e.g. --set actortrain.sync.bucket-size=1MiB; a value starting with [, { or \" is HOCON, " +
            "anything else a string. Wins over the environment and files; a dedicated flag for the same key wins over it",
        AllowMultipleArgumentsPerToken = false,
    };

    public void AddTo(Command command, bool includeClusterAddress)
    {
        command.Add(Config);
        if (includeClusterAddress)
        {
            command.Add(Hostname);
            command.Add(Port);
            command.Add(SeedNodes);
            command.Add(MinNodes);
            command.Add(NodeName);
        }
        command.Add(Epochs);
        command.Add(Out);
        command.Add(Seed);
        command.Add(Resume);
        command.Add(TrainersPerNode);
        command.Add(IntraOpThreads);
        command.Add(Compression);
        command.Add(AccumulationSteps);
        command.Add(LogLevel);
        command.Add(NoProgress);
        command.Add(Set);
        LogLevel.AcceptOnlyFromAmong("DEBUG", "INFO", "WARNING", "ERROR");
        Compression.AcceptOnlyFromAmong([.. Sync.Compression.WireCompressionNames.All]);
        Validate(command);
    }

    private void Validate(Command command)
    {
        command.Validators.Add(r =>
        {
            // Values that do not parse are reported by the parser itself.
            int? Value(Option<int?> o) =>
                r.GetResult(o) is { Tokens: [var token] } && int.TryParse(token.Value, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : null;
            void Positive(Option<int?> o, int min)
            {
                if (Value(o) is int v && v < min) r.AddError($"{o.Name}: must be at least {min}, got {v}");
            }
            Positive(Epochs, 1);
            Positive(MinNodes, 1);
            Positive(TrainersPerNode, 1);
            Positive(IntraOpThreads, 0);
            Positive(AccumulationSteps, 1);
            if (Value(Port) is int port && (port < 0 || port > 65535))
                r.AddError($"{Port.Name}: must be between 0 and 65535, got {port}");
        });
    }

    /// <summary>HOCON lines for the options given on the command line (<paramref name="includeSet"/>: with the --set ones, below the others).</summary>
    public List<string> Overrides(ParseResult r, bool includeSet = true)
    {
        var lines = new List<string>();
        void Add(string key, string value) => lines.Add($"{key} = {value}");
        string I(int v) => v.ToString(CultureInfo.InvariantCulture);

        if (r.GetResult(Hostname) is not null && r.GetValue(Hostname) is { } host)
        {
            Add("akka.remote.dot-netty.tcp.hostname", ConfigLoader.Quote(host));
            Add("akka.remote.dot-netty.tcp.public-hostname", ConfigLoader.Quote(host));
        }
        if (r.GetResult(Port) is not null && r.GetValue(Port) is int port) Add("akka.remote.dot-netty.tcp.port", I(port));
        if (r.GetResult(SeedNodes) is not null && r.GetValue(SeedNodes) is { Length: > 0 } seeds)
            Add("akka.cluster.seed-nodes", "[" + string.Join(", ", seeds.Select(s => ConfigLoader.Quote(SeedAddress(s)))) + "]");
        if (r.GetResult(Epochs) is not null && r.GetValue(Epochs) is int epochs) Add("actortrain.training.epochs", I(epochs));
        if (r.GetResult(Out) is not null && r.GetValue(Out) is { } outDir) Add("actortrain.training.out-dir", ConfigLoader.Quote(outDir));
        if (r.GetResult(Seed) is not null && r.GetValue(Seed) is int seed) Add("actortrain.training.seed", I(seed));
        if (r.GetResult(Resume) is not null && r.GetValue(Resume) is { } resume)
        {
            if (!Directory.Exists(resume)) throw new UsageException($"--resume {resume}: no such directory");
            Add("actortrain.checkpoint.resume-from", ConfigLoader.Quote(Path.GetFullPath(resume)));
        }
        if (r.GetResult(MinNodes) is not null && r.GetValue(MinNodes) is int minNodes) Add("actortrain.min-nodes", I(minNodes));
        if (r.GetResult(TrainersPerNode) is not null && r.GetValue(TrainersPerNode) is int tpn) Add("actortrain.node.trainers-per-node", I(tpn));
        if (r.GetResult(IntraOpThreads) is not null && r.GetValue(IntraOpThreads) is int threads) Add("actortrain.node.intra-op-threads", I(threads));
        if (r.GetResult(Compression) is not null && r.GetValue(Compression) is { } compression) Add("actortrain.sync.compression", compression);
        if (r.GetResult(AccumulationSteps) is not null && r.GetValue(AccumulationSteps) is int k) Add("actortrain.training.accumulation-steps", I(k));
        if (r.GetResult(LogLevel) is not null && r.GetValue(LogLevel) is { } level) Add("akka.loglevel", level);
        if (r.GetValue(NoProgress)) Add("actortrain.progress-bar", "off");
        if (r.GetResult(NodeName) is not null && r.GetValue(NodeName) is { } name) Add("actortrain.node-name", ConfigLoader.Quote(name));
        // Below the dedicated flags: the first line for a key wins. Checked even when not included (local checks them before it starts nodes).
        var sets = SetArguments(r).Select(SettingsOverrides.FromSetArgument).ToList();
        if (includeSet) lines.AddRange(sets);
        return lines;
    }

    /// <summary>The <c>--set key=value</c> arguments as given (the local launcher passes them on to its nodes).</summary>
    public IReadOnlyList<string> SetArguments(ParseResult r) => r.GetValue(Set) ?? [];

    /// <summary>Accepts host:port as shorthand for akka.tcp://actortrain@host:port.</summary>
    public static string SeedAddress(string value)
    {
        if (value.Contains("://", StringComparison.Ordinal)) return value;
        var colon = value.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(value[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            throw new UsageException($"--seed-node: expected host:port or akka.tcp://actortrain@host:port, got \"{value}\"");
        return $"akka.tcp://{Cluster.Hosting.ClusterBootstrap.SystemName}@{value}";
    }
}
