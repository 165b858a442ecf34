using System.Globalization;
using System.Net;
using ActorTrain.Cluster.Settings;
using ActorTrain.Cluster.Transport;
using ActorTrain.Sync.Transport;
using Akka.Actor;
using Akka.Configuration;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// A ring peer over Akka remoting, set up as the framework does it: a remoting ActorSystem named
/// "actortrain" on ActorTrain's defaults (so GradientChunk goes through GradientChunkSerializer),
/// a <see cref="GradientEndpointActor"/> feeding a <see cref="ChunkMailbox"/>, and
/// <see cref="AkkaRingTransport"/> sending to the other peers' endpoints.
/// </summary>
internal sealed class AkkaWorker : IWorkerRun
{
    private const string SystemName = "actortrain";

    private readonly RunSpec spec;
    private readonly int rank;
    private readonly ActorSystem system;
    private readonly ChunkMailbox mailbox = new();
    private readonly IActorRef endpoint;
    private readonly int chunkBytes;
    private AkkaRingTransport? transport;

    public AkkaWorker(RunSpec spec, int rank)
    {
        this.spec = spec;
        this.rank = rank;
        var config = ConfigurationFactory.ParseString($$"""
            akka {
              loglevel = ERROR
              stdout-loglevel = ERROR
              actor.provider = remote
              remote.dot-netty.tcp {
                hostname = "{{spec.Bind}}"
                port = 0
              }
            }
            """);
        if (ChunkAndFrame(spec) is { } sizes)
        {
            config = ConfigurationFactory.ParseString(string.Create(CultureInfo.InvariantCulture,
                $"akka.remote.dot-netty.tcp.maximum-frame-size = {sizes.Frame}b\nactortrain.sync.chunk-size = {sizes.Chunk}b")).WithFallback(config);
        }

        config = config.WithFallback(ActorTrainSettings.DefaultConfig());
        system = ActorSystem.Create(SystemName, config);
        chunkBytes = ActorTrainSettings.Create(system).Sync.ChunkSizeBytes;
        endpoint = system.ActorOf(GradientEndpointActor.Props(mailbox, chunkBytes), GradientEndpointActor.Name);
    }

    /// <summary>HOST:PORT of this worker's remoting (IPv6 hosts in brackets, as Akka addresses write them).</summary>
    public string Address => new IPEndPoint(spec.Bind, ((ExtendedActorSystem)system).Provider.DefaultAddress.Port
        ?? throw new InvalidOperationException("Akka remoting did not bind a port.")).ToString();

    /// <summary>
    /// Chunk and frame size when they differ from the framework's defaults (reference.conf: 64 KiB
    /// chunks below Akka's 128,000-byte frame): --chunk-bytes, or for --akka-whole-bucket the largest
    /// ring segment (ceil(floats / N) floats) so each segment is one message. The frame leaves room
    /// for the message's ids and Akka's envelope.
    /// </summary>
    private static (long Chunk, long Frame)? ChunkAndFrame(RunSpec spec)
    {
        const long defaultFrame = 128_000;
        const long envelope = 64 * 1024;
        long? chunk = spec.AkkaWholeBucket ? Math.Max(1024, spec.EffectiveChunkBytes) : spec.ChunkBytes > 0 ? spec.ChunkBytes : null;
        return chunk is { } c ? (c, Math.Max(defaultFrame, c + envelope)) : null;
    }

    public async Task ConnectAsync(string token, IReadOnlyList<string> peers, CancellationToken cancellationToken)
    {
        var endpoints = new IActorRef[peers.Count];
        for (int p = 0; p < peers.Count; p++)
        {
            endpoints[p] = p == rank
                ? endpoint
                : await system.ActorSelection($"akka.tcp://{SystemName}@{peers[p]}/user/{GradientEndpointActor.Name}")
                    .ResolveOne(TimeSpan.FromSeconds(30), cancellationToken);
        }

        // Chunks are accepted only from each peer's own address.
        endpoint.Tell(new GradientEndpointActor.SetWorld(RingMeasurement.Generation,
            endpoints.Select((e, p) => p == rank ? ((ExtendedActorSystem)system).Provider.DefaultAddress : e.Path.Address).ToList()));
        transport = new AkkaRingTransport(rank, endpoints, mailbox, chunkBytes);
    }

    public async Task<WorkerResult> MeasureAsync(CancellationToken cancellationToken)
    {
        var ring = transport ?? throw new InvalidOperationException("Not connected.");
        var samples = new List<MemorySample>();
        var times = await RingMeasurement.MeasureAsync(ring, spec, cancellationToken, samples);
        return new WorkerResult(rank, times, BytesSent: 0, Samples: [.. samples]);
    }

    public async ValueTask DisposeAsync()
    {
        await system.Terminate().WaitAsync(TimeSpan.FromSeconds(10));
    }
}
