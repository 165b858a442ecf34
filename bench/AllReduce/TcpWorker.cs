using System.Net;
using System.Net.Sockets;
using ActorTrain.Sync.Transport.Tcp;

namespace ActorTrain.Bench.AllReduce;

/// <summary>A ring peer over <see cref="TcpRingTransport"/>.</summary>
internal sealed class TcpWorker : IWorkerRun
{
    /// <summary>
    /// Chunk size when --chunk-bytes is not given: the largest that keeps each received chunk's array
    /// (allocated per chunk) out of the large object heap; see docs/PERFORMANCE.md.
    /// </summary>
    public const int DefaultChunkBytes = TcpRingTransport.RecommendedMaxChunkElements * sizeof(float);

    private readonly RunSpec spec;
    private readonly int rank;
    private readonly TcpListener listener;
    private TcpRingTransport? transport;

    public TcpWorker(RunSpec spec, int rank)
    {
        this.spec = spec;
        this.rank = rank;
        listener = TcpRingTransport.Listen(spec.Bind, 0);
    }

    public string Address => ((IPEndPoint)listener.LocalEndpoint).ToString();

    public async Task ConnectAsync(string token, IReadOnlyList<string> peers, CancellationToken cancellationToken)
    {
        int chunkElements = (spec.ChunkBytes > 0 ? spec.ChunkBytes : DefaultChunkBytes) / sizeof(float);
        transport = await TcpRingTransport.ConnectAsync(
            rank, [.. peers.Select(IPEndPoint.Parse)], listener, RingMeasurement.Generation, Convert.FromHexString(token), chunkElements, cancellationToken,
            sharedMemory: spec.Transport == BenchTransport.Shm);
    }

    public async Task<WorkerResult> MeasureAsync(CancellationToken cancellationToken)
    {
        var ring = transport ?? throw new InvalidOperationException("Not connected.");
        var samples = new List<MemorySample>();
        var times = await RingMeasurement.MeasureAsync(ring, spec, cancellationToken, samples);
        return new WorkerResult(rank, times, ring.BytesSent, Samples: [.. samples]);
    }

    public async ValueTask DisposeAsync()
    {
        if (transport is not null)
        {
            await transport.DisposeAsync();
        }
        else
        {
            listener.Stop();
        }
    }
}
