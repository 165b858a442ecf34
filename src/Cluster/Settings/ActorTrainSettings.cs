using ActorTrain.Sync.Compression;
using Akka.Actor;
using Akka.Configuration;

namespace ActorTrain.Cluster.Settings;

public enum NonFiniteGradientPolicy { Skip, Fail }

public enum DeviceKind { Auto, Cpu, Cuda }

/// <summary>The cross-node transport of the gradient ring (actortrain.sync.transport): Akka remoting or the node's own TCP data plane.</summary>
public enum CrossNodeTransport { Akka, Tcp }

internal static class CrossNodeTransports
{
    /// <summary>Parses a transport name as the settings and a world's plan carry it; <paramref name="where"/> names its source in the error.</summary>
    public static CrossNodeTransport Parse(string name, string where) => name switch
    {
        "akka" => CrossNodeTransport.Akka,
        "tcp" => CrossNodeTransport.Tcp,
        _ => throw new ArgumentException($"{where}: unknown cross-node transport \"{name}\" (akka | tcp)"),
    };
}

/// <summary>
/// Every <c>actortrain</c> setting, read and validated once. Code reads settings from here,
/// never from raw HOCON paths.
/// </summary>
public sealed record ActorTrainSettings
{
    /// <summary>
    /// Version of everything nodes say to each other; a node of another version is refused at
    /// registration. 3: gradient chunks carry raw floats in their own binary format.
    /// </summary>
    public const int ProtocolVersion = 5;

    public required string JobId { get; init; }
    public required string NodeName { get; init; }
    public required int MinNodes { get; init; }
    public required int MaxNodes { get; init; }
    public required ElasticSettings Elastic { get; init; }
    public required TimeSpan StartupTimeout { get; init; }
    public required TimeSpan RegistrationInterval { get; init; }
    public required NodeSettings Node { get; init; }
    public required TrainingSettings Training { get; init; }
    public required SyncSettings Sync { get; init; }
    public required bool MkldnnEnabled { get; init; }
    /// <summary>actortrain.torch.nnpack: libtorch's NNPACK convolutions.</summary>
    public required bool NnpackEnabled { get; init; }
    public required bool ProgressBar { get; init; }
    public required MetricsSettings Metrics { get; init; }
    public required CheckpointSettings Checkpoint { get; init; }
    public TlsSettings Tls { get; init; } = TlsSettings.Disabled;
    /// <summary>The shared secret every control message is tagged with (off when empty).</summary>
    public ClusterSecretSettings ClusterSecret { get; init; } = ClusterSecretSettings.Off;
    /// <summary>Akka.Management's endpoint (health checks) and how the cluster forms (seed nodes or Cluster Bootstrap).</summary>
    public ManagementSettings Management { get; init; } = ManagementSettings.Off;
    /// <summary>The digest of the job's own settings (<see cref="JobSection"/>): nodes with other job settings are refused.</summary>
    public string JobSettingsDigest { get; init; } = "";

    /// <summary>ActorTrain's embedded defaults (reference.conf) with Akka's below them.</summary>
    public static Config DefaultConfig() =>
        ConfigurationFactory.FromResource<ActorTrainSettings>("ActorTrain.Cluster.reference.conf");

    public static ActorTrainSettings Create(ActorSystem system) => Create(system.Settings.Config);

    /// <summary>Reads and validates the settings; throws <see cref="SettingsException"/> naming the key.</summary>
    public static ActorTrainSettings Create(Config config)
    {
        var c = new Reader(config.WithFallback(DefaultConfig()));
        var frameSize = c.Bytes("akka.remote.dot-netty.tcp.maximum-frame-size", min: 32 * 1024);
        var chunk = c.Bytes("actortrain.sync.chunk-size", min: 1024);
        // A chunk message carries ids and a length prefix besides the floats.
        if (chunk > frameSize - 1024)
            throw new SettingsException("actortrain.sync.chunk-size",
                $"{chunk} bytes does not fit akka.remote.dot-netty.tcp.maximum-frame-size ({frameSize} bytes) with 1 KiB to spare");

        return new ActorTrainSettings
        {
            JobId = c.String("actortrain.job-id", allowEmpty: true),
            JobSettingsDigest = JobSection.Digest(config),
            NodeName = c.String("actortrain.node-name", allowEmpty: true),
            MinNodes = c.Int("actortrain.min-nodes", min: 1, max: 4096),
            MaxNodes = c.Int("actortrain.max-nodes", min: 0, max: 4096),
            Elastic = new ElasticSettings
            {
                Enabled = c.Bool("actortrain.elastic.enabled"),
                RegroupTimeout = c.Duration("actortrain.elastic.regroup-timeout"),
                MinSurvivingNodes = c.Int("actortrain.elastic.min-surviving-nodes", min: 1, max: 4096),
                HangReportAfter = c.Duration("actortrain.elastic.hang-report-after"),
                Quorum = c.Enum("actortrain.elastic.quorum", new Dictionary<string, QuorumPolicy>
                {
                    ["majority"] = QuorumPolicy.Majority, ["off"] = QuorumPolicy.Off,
                }),
                Rejoin = c.Bool("actortrain.elastic.rejoin"),
                RejoinTimeout = c.Duration("actortrain.elastic.rejoin-timeout"),
            },
            StartupTimeout = c.Duration("actortrain.startup-timeout", allowZero: true),
            RegistrationInterval = c.Duration("actortrain.registration-interval"),
            Node = new NodeSettings
            {
                Train = c.Bool("actortrain.node.train"),
                Device = c.Enum("actortrain.node.device", new Dictionary<string, DeviceKind>
                {
                    ["auto"] = DeviceKind.Auto, ["cpu"] = DeviceKind.Cpu, ["cuda"] = DeviceKind.Cuda,
                }),
                TrainersPerNode = c.Int("actortrain.node.trainers-per-node", min: 1, max: 256),
                IntraOpThreads = c.Int("actortrain.node.intra-op-threads", min: 0, max: 4096),
            },
            Training = new TrainingSettings
            {
                Epochs = c.Int("actortrain.training.epochs", min: 1, max: 1_000_000),
                BatchSize = c.Int("actortrain.training.batch-size", min: 1, max: 1 << 24),
                Seed = c.Int("actortrain.training.seed", min: int.MinValue, max: int.MaxValue),
                LogInterval = c.Int("actortrain.training.log-interval", min: 1, max: int.MaxValue),
                AccumulationSteps = c.Int("actortrain.training.accumulation-steps", min: 1, max: 65536),
                OutDir = c.String("actortrain.training.out-dir", allowEmpty: false),
                WarmUp = c.Bool("actortrain.training.warm-up"),
            },
            Sync = new SyncSettings
            {
                BucketSizeBytes = c.Bytes("actortrain.sync.bucket-size", min: 1024),
                ChunkSizeBytes = (int)chunk,
                IntraNode = c.Enum("actortrain.sync.intra-node", new Dictionary<string, string>
                {
                    ["auto"] = "auto", ["shared-memory"] = "shared-memory", ["nccl"] = "nccl",
                }),
                NcclLibrary = c.String("actortrain.sync.nccl-library", allowEmpty: true),
                NonFiniteGradients = c.Enum("actortrain.sync.non-finite-gradients", new Dictionary<string, NonFiniteGradientPolicy>
                {
                    ["skip"] = NonFiniteGradientPolicy.Skip, ["fail"] = NonFiniteGradientPolicy.Fail,
                }),
                StepTimeout = c.Duration("actortrain.sync.step-timeout"),
                Transport = c.Enum("actortrain.sync.transport", new Dictionary<string, string> { ["akka"] = "akka", ["tcp"] = "tcp" }),
                TcpChunkSizeBytes = (int)c.Bytes("actortrain.sync.tcp-chunk-size", min: 1024, max: 64L << 20),
                TcpPort = c.Int("actortrain.sync.tcp-port", min: 0, max: 65535),
                SharedMemory = c.Bool("actortrain.sync.shared-memory"),
                Compression = c.Enum("actortrain.sync.compression", WireCompressionNames.All.ToDictionary(n => n, WireCompressionNames.Parse)),
                OverlapBackward = c.Bool("actortrain.sync.overlap-backward"),
                BroadcastBuffers = c.Bool("actortrain.sync.broadcast-buffers"),
                MaxPendingChunkBytes = c.Bytes("actortrain.sync.max-pending-chunk-bytes", min: 64 * 1024),
            },
            MkldnnEnabled = c.Bool("actortrain.torch.mkldnn"),
            NnpackEnabled = c.Bool("actortrain.torch.nnpack"),
            ProgressBar = c.Bool("actortrain.progress-bar"),
            Metrics = new MetricsSettings
            {
                Enabled = c.Bool("actortrain.metrics.enabled"),
                Hostname = c.String("actortrain.metrics.hostname", allowEmpty: false),
                Port = c.Int("actortrain.metrics.port", min: 0, max: 65535),
            },
            Checkpoint = new CheckpointSettings
            {
                Dir = c.String("actortrain.checkpoint.dir", allowEmpty: true),
                EverySteps = c.Int("actortrain.checkpoint.every-steps", min: 0, max: int.MaxValue),
                AtEpochEnd = c.Bool("actortrain.checkpoint.at-epoch-end"),
                Keep = c.Int("actortrain.checkpoint.keep", min: 1, max: 10_000),
                ResumeFrom = c.String("actortrain.checkpoint.resume-from", allowEmpty: true),
            },
            Tls = ReadTls(c),
            ClusterSecret = ClusterSecretSettings.Create(config),
            Management = ReadManagement(c, minNodes: c.Int("actortrain.min-nodes", min: 1, max: 4096)),
        };
    }

    private static ManagementSettings ReadManagement(Reader c, int minNodes)
    {
        var method = c.Enum(ManagementSettings.MethodKey, ManagementSettings.Methods);
        var endpoints = c.Strings(ManagementSettings.EndpointsKey);
        if (endpoints.FirstOrDefault(e => !ManagementSettings.IsEndpoint(e)) is { } bad)
            throw new SettingsException(ManagementSettings.EndpointsKey, $"expected host:management-port entries, got \"{bad}\"");
        if (method == DiscoveryMethod.Config && endpoints.Count == 0)
            throw new SettingsException(ManagementSettings.EndpointsKey, $"is empty, but {ManagementSettings.MethodKey} = config needs every node's host:management-port");
        var required = c.Int(ManagementSettings.RequiredContactPointsKey, min: 0, max: 10_000);
        if (required == 0) required = method == DiscoveryMethod.Config ? endpoints.Count : minNodes;
        return new ManagementSettings
        {
            Enabled = c.Bool(ManagementSettings.EnabledKey),
            Method = method,
            Endpoints = endpoints,
            RequiredContactPoints = required,
            ServiceName = c.String(ManagementSettings.ServiceNameKey, allowEmpty: false),
            PodLabelSelector = c.String(ManagementSettings.PodLabelSelectorKey, allowEmpty: false),
            Namespace = c.String(ManagementSettings.NamespaceKey, allowEmpty: true),
            ManagementPortName = c.String(ManagementSettings.PortNameKey, allowEmpty: true),
        };
    }

    private static TlsSettings ReadTls(Reader c)
    {
        var enabled = c.Bool(TlsSettings.EnabledKey);
        if (!enabled)
        {
            // Akka's own TLS alone would leave the data plane in the clear and trust the system's CAs.
            if (c.Has("akka.remote.dot-netty.tcp.enable-ssl") && c.Bool("akka.remote.dot-netty.tcp.enable-ssl"))
                throw new SettingsException("akka.remote.dot-netty.tcp.enable-ssl",
                    $"is on but {TlsSettings.EnabledKey} is off; switch TLS on with hocon/tls.conf ({TlsSettings.EnabledKey} = on), which configures remoting and the data plane together");
            return TlsSettings.Disabled;
        }
        return new TlsSettings
        {
            Enabled = true,
            CertificatePath = c.String(TlsSettings.CertificatePathKey, allowEmpty: false),
            CertificatePassword = c.String(TlsSettings.CertificatePasswordKey, allowEmpty: true),
            CaCertificatePath = c.String(TlsSettings.CaCertificatePathKey, allowEmpty: false),
        };
    }

    /// <summary>Typed, validated access to HOCON values; every failure names the key.</summary>
    private sealed class Reader(Config config)
    {
        private T Get<T>(string path, Func<T> read)
        {
            if (!config.HasPath(path)) throw new SettingsException(path, "missing");
            try { return read(); }
            catch (SettingsException) { throw; }
            catch (Exception e) { throw new SettingsException(path, $"not a valid value ({FirstLine(e.Message)})", e); }
        }

        public bool Has(string path) => config.HasPath(path);

        private string Raw(string path) => Get(path, () => config.GetString(path) ?? "");

        public string String(string path, bool allowEmpty)
        {
            var value = Raw(path);
            if (!allowEmpty && string.IsNullOrWhiteSpace(value)) throw new SettingsException(path, "must not be empty");
            return value;
        }

        public int Int(string path, int min, int max)
        {
            var raw = Raw(path);
            if (!long.TryParse(raw.Trim(), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value))
                throw new SettingsException(path, $"expected an integer, got \"{raw}\"");
            if (value < min || value > max)
                throw new SettingsException(path, max == int.MaxValue ? $"must be at least {min}, got {value}" : $"must be between {min} and {max}, got {value}");
            return (int)value;
        }

        public bool Bool(string path)
        {
            var raw = Raw(path).Trim().ToLowerInvariant();
            return raw switch
            {
                "on" or "true" or "yes" => true,
                "off" or "false" or "no" => false,
                _ => throw new SettingsException(path, $"expected on/off (or true/false), got \"{raw}\""),
            };
        }

        public long Bytes(string path, long min, long max = long.MaxValue)
        {
            var raw = Raw(path);
            long? value;
            try { value = config.GetByteSize(path); }
            catch (Exception) { value = null; }
            if (value is null) throw new SettingsException(path, $"expected a size such as 64KiB or 4MiB, got \"{raw}\"");
            if (value < min) throw new SettingsException(path, $"must be at least {min} bytes, got {value}");
            if (value > max) throw new SettingsException(path, $"must be at most {max} bytes, got {value}");
            return value.Value;
        }

        public TimeSpan Duration(string path, bool allowZero = false)
        {
            var raw = Raw(path);
            TimeSpan value;
            try { value = config.GetTimeSpan(path, allowInfinite: false); }
            catch (Exception) { throw new SettingsException(path, $"expected a duration such as 10s or 500ms, got \"{raw}\""); }
            if (value < TimeSpan.Zero || (!allowZero && value == TimeSpan.Zero))
                throw new SettingsException(path, $"must be {(allowZero ? "zero or positive" : "positive")}, got \"{raw}\"");
            return value;
        }

        public IReadOnlyList<string> Strings(string path) => Get(path, () => (IReadOnlyList<string>)config.GetStringList(path).ToList());

        public T Enum<T>(string path, IReadOnlyDictionary<string, T> allowed)
        {
            var raw = Raw(path).Trim();
            if (allowed.TryGetValue(raw.ToLowerInvariant(), out var value)) return value;
            throw new SettingsException(path, $"expected one of {string.Join(" | ", allowed.Keys)}, got \"{raw}\"");
        }

        private static string FirstLine(string s) => s.Split('\n')[0].Trim();
    }
}

public sealed record NodeSettings
{
    public required bool Train { get; init; }
    public required DeviceKind Device { get; init; }
    public required int TrainersPerNode { get; init; }
    /// <summary>0 means: the machine's cores divided among this node's trainers.</summary>
    public required int IntraOpThreads { get; init; }

    public int EffectiveIntraOpThreads(int trainersOnMachine) =>
        IntraOpThreads > 0 ? IntraOpThreads : Math.Max(1, Environment.ProcessorCount / Math.Max(1, trainersOnMachine));
}

public sealed record TrainingSettings
{
    public required int Epochs { get; init; }
    public required int BatchSize { get; init; }
    public required int Seed { get; init; }
    public required int LogInterval { get; init; }
    /// <summary>Micro-batches of batch-size per optimizer step (gradients reduced once, on the last).</summary>
    public required int AccumulationSteps { get; init; }
    public required string OutDir { get; init; }
    /// <summary>A step that leaves no trace and one evaluation batch before the node registers (actortrain.training.warm-up).</summary>
    public required bool WarmUp { get; init; }
}

public sealed record SyncSettings
{
    public required long BucketSizeBytes { get; init; }
    public required int ChunkSizeBytes { get; init; }
    public required string IntraNode { get; init; }
    /// <summary>libnccl.so.2's path or folder, probed first; empty: probe the usual places only.</summary>
    public required string NcclLibrary { get; init; }
    public required NonFiniteGradientPolicy NonFiniteGradients { get; init; }
    public required TimeSpan StepTimeout { get; init; }
    public required string Transport { get; init; }
    public required int TcpChunkSizeBytes { get; init; }
    public required int TcpPort { get; init; }
    /// <summary>tcp transport: a ring hop between two nodes on one host moves its frames through /dev/shm, not the socket.</summary>
    public required bool SharedMemory { get; init; }
    /// <summary>The format of gradient chunks on the cross-node ring (HOCON: none | fp16 | bf16, <see cref="WireCompressionNames"/>).</summary>
    public required WireCompression Compression { get; init; }
    /// <summary>Reduce each bucket as soon as backward has produced its gradients (CPU trainers).</summary>
    public required bool OverlapBackward { get; init; }
    /// <summary>Before each step, every replica takes rank 0's module buffers (BatchNorm running statistics and the like).</summary>
    public required bool BroadcastBuffers { get; init; }

    /// <summary>
    /// Bytes of gradient chunks from one peer that a node holds before their reduction asks for them;
    /// beyond it a chunk is refused and counted (a neighbour that runs ahead legitimately stays below
    /// about twice the model's gradient bytes).
    /// </summary>
    public required long MaxPendingChunkBytes { get; init; }

    /// <summary>Chunk size of the chosen cross-node transport.</summary>
    public int TransportChunkSizeBytes => Transport == "tcp" ? TcpChunkSizeBytes : ChunkSizeBytes;
}

/// <summary>TLS with mutual authentication for Akka remoting and the TCP data plane (hocon/tls.conf).</summary>
public sealed record TlsSettings
{
    public const string EnabledKey = "actortrain.tls.enabled";
    public const string CertificatePathKey = "actortrain.tls.certificate-path";
    public const string CertificatePasswordKey = "actortrain.tls.certificate-password";
    public const string CaCertificatePathKey = "actortrain.tls.ca-certificate-path";

    public static readonly TlsSettings Disabled = new() { Enabled = false, CertificatePath = "", CertificatePassword = "", CaCertificatePath = "" };

    public required bool Enabled { get; init; }
    /// <summary>This node's certificate and private key (PKCS#12).</summary>
    public required string CertificatePath { get; init; }
    public required string CertificatePassword { get; init; }
    /// <summary>The CA certificate(s), PEM or DER, that every peer's certificate must chain to.</summary>
    public required string CaCertificatePath { get; init; }

    /// <summary>Keeps the password out of logs and exception messages.</summary>
    public override string ToString() =>
        $"TlsSettings {{ Enabled = {Enabled}, CertificatePath = {CertificatePath}, CaCertificatePath = {CaCertificatePath} }}";
}

/// <summary>
/// The cluster secret (<c>actortrain.cluster-secret</c>, or the environment variable
/// <c>ACTORTRAIN_CLUSTER_SECRET</c>, which wins over config files): when set, every control message
/// carries a tag made with it, and a message without a valid one is refused.
/// </summary>
public sealed class ClusterSecretSettings
{
    public const string Key = "actortrain.cluster-secret";
    public const string EnvironmentVariable = "ACTORTRAIN_CLUSTER_SECRET";

    public static readonly ClusterSecretSettings Off = new("");

    private ClusterSecretSettings(string value) => Value = value;

    /// <summary>Empty: no secret, every peer that reaches the port is heard.</summary>
    public string Value { get; }

    public bool Enabled => Value.Length > 0;

    /// <summary>The secret in <paramref name="config"/> (loaders layer <see cref="FromEnvironment"/> above the config files).</summary>
    public static ClusterSecretSettings Create(Config config)
    {
        var value = config.HasPath(Key) ? config.GetString(Key) ?? "" : "";
        return value.Length == 0 ? Off : new ClusterSecretSettings(value);
    }

    /// <summary>
    /// A config layer holding the secret from <see cref="EnvironmentVariable"/>'s value, or an empty
    /// one when it is unset or empty.
    /// </summary>
    public static Config FromEnvironment(string? environmentValue)
    {
        if (string.IsNullOrEmpty(environmentValue)) return ConfigurationFactory.Empty;
        var quoted = "\"" + environmentValue.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
        return ConfigurationFactory.ParseString($"{Key} = {quoted}");
    }

    /// <summary>Keeps the secret out of logs and exception messages.</summary>
    public override string ToString() => Enabled ? "ClusterSecret { set }" : "ClusterSecret { off }";
}

public sealed record MetricsSettings
{
    public required bool Enabled { get; init; }
    public required string Hostname { get; init; }
    /// <summary>0 picks a free port.</summary>
    public required int Port { get; init; }
}

/// <summary>How the run survives lost nodes and takes in new ones (actortrain.elastic).</summary>
public sealed record ElasticSettings
{
    /// <summary>Off: a lost node ends the run (exit 3) and nodes cannot join a running job.</summary>
    public required bool Enabled { get; init; }

    /// <summary>How long the coordinator waits for the nodes of a world to stop and report before it leaves out those that did not.</summary>
    public required TimeSpan RegroupTimeout { get; init; }

    /// <summary>The run goes on after a loss only while at least this many nodes remain.</summary>
    public required int MinSurvivingNodes { get; init; }

    /// <summary>A step still waiting for contributions after this long is reported, naming the missing rank.</summary>
    public required TimeSpan HangReportAfter { get; init; }

    /// <summary>Which side of a partition may form the next generation (see <see cref="Coordination.Quorum"/>).</summary>
    public required QuorumPolicy Quorum { get; init; }

    /// <summary>A node left out, downed or stopped for lack of quorum comes back as a new member of the cluster.</summary>
    public required bool Rejoin { get; init; }

    /// <summary>How long such a node keeps trying to come back before it exits.</summary>
    public required TimeSpan RejoinTimeout { get; init; }
}

/// <summary>actortrain.elastic.quorum.</summary>
public enum QuorumPolicy
{
    /// <summary>A generation forms only on a side that sees a strict majority of the previous generation's nodes.</summary>
    Majority,

    /// <summary>Any side forms a generation (a partition can then train twice: split brain).</summary>
    Off,
}

public sealed record CheckpointSettings
{
    /// <summary>Empty means <c>&lt;out-dir&gt;/checkpoints</c>: see <see cref="ResolveDir"/>.</summary>
    public required string Dir { get; init; }
    /// <summary>0 means no periodic checkpoints.</summary>
    public required int EverySteps { get; init; }
    public required bool AtEpochEnd { get; init; }
    public required int Keep { get; init; }
    /// <summary>Directory to resume from; empty for a fresh start.</summary>
    public required string ResumeFrom { get; init; }

    public string ResolveDir(string outDir) => string.IsNullOrWhiteSpace(Dir) ? Path.Combine(outDir, "checkpoints") : Dir;
}
