using System.Globalization;
using System.Net;

namespace ActorTrain.Bench.AllReduce;

/// <summary>How the gradient bytes travel between the benchmark's processes.</summary>
public enum BenchTransport
{
    /// <summary>AkkaRingTransport: GradientChunk messages over Akka remoting.</summary>
    Akka,

    /// <summary>TcpRingTransport: the direct TCP data plane.</summary>
    Tcp,

    /// <summary>TcpRingTransport with shared memory allowed: ranks on one host move frames through /dev/shm.</summary>
    Shm,

    /// <summary>The ceiling: one blocking socket stream from one process to another, no all-reduce.</summary>
    Socket,
}

/// <summary>One benchmark run: N processes, one all-reduce size, one transport.</summary>
public sealed record RunSpec
{
    public required int Nodes { get; init; }
    public required long Bytes { get; init; }
    public required BenchTransport Transport { get; init; }

    /// <summary>Akka only: each ring segment as one message (chunk and frame size raised to fit).</summary>
    public bool AkkaWholeBucket { get; init; }

    public required int Iterations { get; init; }
    public required int Warmup { get; init; }

    /// <summary>Largest chunk in bytes; 0: the transport's default.</summary>
    public int ChunkBytes { get; init; }

    public required TimeSpan Timeout { get; init; }

    /// <summary>The address each worker's data plane listens on (and the others reach it at).</summary>
    public IPAddress Bind { get; init; } = IPAddress.Loopback;

    /// <summary>Cross-node wire format of the timed all-reduces (the barriers stay float32).</summary>
    public ActorTrain.Sync.Compression.WireCompression Compression { get; init; }

    /// <summary>Steady-state mode: every this many iterations each worker records its GC counts, allocation and RSS (0: off).</summary>
    public int ReportEvery { get; init; }

    public int Floats => checked((int)(Bytes / sizeof(float)));

    /// <summary>The largest chunk this run sends: --chunk-bytes, else the transport's default; a whole segment for akka-whole.</summary>
    public long EffectiveChunkBytes => Transport switch
    {
        BenchTransport.Akka when AkkaWholeBucket => ((Floats + (long)Nodes - 1) / Nodes) * sizeof(float),
        _ when ChunkBytes > 0 => ChunkBytes,
        BenchTransport.Akka => ActorTrain.Cluster.Settings.ActorTrainSettings.Create(ActorTrain.Cluster.Settings.ActorTrainSettings.DefaultConfig()).Sync.ChunkSizeBytes,
        BenchTransport.Tcp or BenchTransport.Shm => TcpWorker.DefaultChunkBytes,
        _ => Bytes,
    };

    /// <summary>Processes started: the socket ceiling always uses two.</summary>
    public int Processes => Transport == BenchTransport.Socket ? 2 : Nodes;

    public string Label => (Transport switch
    {
        BenchTransport.Akka => AkkaWholeBucket ? "akka-whole" : "akka",
        BenchTransport.Tcp => "tcp",
        BenchTransport.Shm => "shm",
        _ => "socket",
    }) + (Compression == ActorTrain.Sync.Compression.WireCompression.None ? "" : "+" + ActorTrain.Sync.Compression.WireCompressionNames.ToName(Compression));

    public void Validate()
    {
        if (Nodes is < 1 or > 64) throw new ArgumentException($"--nodes must be in 1..64, got {Nodes}");
        if (Bytes <= 0 || Bytes % sizeof(float) != 0 || Bytes / sizeof(float) > int.MaxValue)
            throw new ArgumentException($"--bytes must be a positive multiple of 4 (float32) below 8 GiB, got {Bytes}");
        if (Iterations < 1) throw new ArgumentException($"--iterations must be at least 1, got {Iterations}");
        if (Warmup < 0) throw new ArgumentException($"--warmup must not be negative, got {Warmup}");
        if (ChunkBytes < 0 || ChunkBytes % sizeof(float) != 0) throw new ArgumentException($"--chunk-bytes must be a multiple of 4, got {ChunkBytes}");
        if (AkkaWholeBucket && Transport != BenchTransport.Akka) throw new ArgumentException("--akka-whole-bucket applies to --transport akka only");
        if (Compression != ActorTrain.Sync.Compression.WireCompression.None && Transport == BenchTransport.Socket)
            throw new ArgumentException("--compression applies to the ring transports (akka, tcp), not to the socket ceiling");
        if (ReportEvery < 0) throw new ArgumentException($"the report interval must not be negative, got {ReportEvery}");
    }
}

/// <summary>Byte sizes as people write them: 1724320, 64KiB, 16MiB, 16M (binary), 16MB (decimal).</summary>
public static class ByteSize
{
    public static long Parse(string text)
    {
        var s = text.Trim();
        int split = 0;
        while (split < s.Length && (char.IsDigit(s[split]) || s[split] == '.')) split++;
        if (split == 0 || !double.TryParse(s[..split], NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
            throw new FormatException($"'{text}' is not a byte size (examples: 1724320, 64KiB, 16MiB, 100MB)");

        long unit = s[split..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KIB" => 1L << 10,
            "M" or "MIB" => 1L << 20,
            "G" or "GIB" => 1L << 30,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            var u => throw new FormatException($"'{u}' is not a byte unit (B, KiB, MiB, GiB, KB, MB, GB)"),
        };
        return checked((long)Math.Round(number * unit));
    }

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 when bytes % (1L << 30) == 0 => $"{bytes >> 30} GiB",
        >= 1L << 20 when bytes % (1L << 20) == 0 => $"{bytes >> 20} MiB",
        >= 1L << 10 when bytes % (1L << 10) == 0 => $"{bytes >> 10} KiB",
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:0.##} MB"),
        _ => $"{bytes} B",
    };
}
