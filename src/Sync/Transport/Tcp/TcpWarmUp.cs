using System.Net;
using System.Security.Cryptography;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Ring;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// A ring of two peers inside this process, on loopback, that sums a few chunks once in every wire
/// format and closes; once over the sockets and once through shared memory. The project runs without tiered compilation, so each method is compiled fully
/// optimised on its first call; without this, the first generation's ring connection and first
/// reduction paid for compiling the data plane (about 0.1 s each, on the critical path of every
/// node's first step). A node runs it in the background while it joins the cluster.
/// </summary>
internal static class TcpWarmUp
{
    /// <summary>Chunks as small as this keep the warm-up short; the code paths are those of any chunk size.</summary>
    private const int ChunkElements = 1024;

    /// <summary>Each peer's buffer: two chunks per ring segment, so every chunk loop turns more than once.</summary>
    private const int BufferElements = 4 * ChunkElements;

    public static async Task RunAsync(CancellationToken cancellationToken)
    {
        await RunAsync(sharedMemory: false, cancellationToken).ConfigureAwait(false);
        await RunAsync(sharedMemory: true, cancellationToken).ConfigureAwait(false);
    }

    private static async Task RunAsync(bool sharedMemory, CancellationToken cancellationToken)
    {
        var token = RandomNumberGenerator.GetBytes(16);
        var listeners = new[] { TcpRingTransport.Listen(IPAddress.Loopback, 0), TcpRingTransport.Listen(IPAddress.Loopback, 0) };
        var peers = listeners.Select(l => (IPEndPoint)l.LocalEndpoint).ToArray();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        var connecting = listeners.Select((listener, i) => TcpRingTransport.ConnectAsync(i, peers, listener, generation: 1, token, ChunkElements, timeout.Token,
            sharedMemory: sharedMemory)).ToArray();
        try
        {
            await Task.WhenAll(connecting).ConfigureAwait(false);
            var step = 0;
            foreach (var compression in Enum.GetValues<WireCompression>())
            {
                var buffers = connecting.Select((_, peer) => Enumerable.Range(0, BufferElements).Select(i => (float)(i + peer)).ToArray()).ToArray();
                var key = ChunkKey.Call(generation: 1, step: step++, bucket: 0, lane: 0);
                await Task.WhenAll(connecting.Select((c, peer) => RingAllReduce.RunAsync(c.Result, buffers[peer], key, timeout.Token, compression))).ConfigureAwait(false);
                if (!buffers[0].AsSpan().SequenceEqual(buffers[1]))
                    throw new InvalidOperationException($"the warm-up ring ended with different sums on its two peers ({compression})");
            }
        }
        finally
        {
            foreach (var c in connecting)
            {
                if (c.IsCompletedSuccessfully) await c.Result.DisposeAsync().ConfigureAwait(false);
            }
            foreach (var listener in listeners) listener.Stop();
        }
    }
}
