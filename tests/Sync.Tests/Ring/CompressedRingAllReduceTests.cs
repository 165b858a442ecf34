using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Tests.Ring;

public class CompressedRingAllReduceTests
{
    public static TheoryData<WireCompression, int, int, int> Cases()
    {
        var data = new TheoryData<WireCompression, int, int, int>();
        foreach (var format in new[] { WireCompression.Fp16, WireCompression.Bf16 })
        {
            foreach (int n in new[] { 2, 3, 5 })
            {
                foreach (int length in new[] { 1, n + 1, 1001, 100_003 })
                {
                    foreach (int chunk in new[] { 7, 1000 })
                    {
                        data.Add(format, n, length, chunk);
                    }
                }
            }
        }

        return data;
    }

    /// <summary>
    /// Error bound: a segment's sum passes N−1 hops, each rounding the float32 partial sum once to the
    /// 16-bit format (relative error at most u = 2^-11 for fp16, 2^-8 for bf16, and at most 2^-25
    /// absolutely in fp16's subnormal range), and the owner rounds the finished sum once more. Every
    /// partial sum is at most Σ|x_i| in magnitude, so |result − exact| ≤ N·(u·Σ|x_i| + 2^-25), plus
    /// float32 addition error (covered by 1e-6·N·Σ|x_i|).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Sums_stay_within_one_rounding_per_hop_and_peers_end_bitwise_equal(WireCompression format, int n, int length, int maxChunk)
    {
        var ring = InMemoryRingTransport.CreateRing(n, maxChunk);
        var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(length, seed: (p * 17) + length)).ToArray();
        var magnitude = new double[length];
        foreach (var b in buffers)
        {
            for (int i = 0; i < length; i++)
            {
                magnitude[i] += Math.Abs(b[i]);
            }
        }

        var expected = TestData.ReferenceSum(buffers, length);

        await RunRing(ring, buffers, format);

        double u = format == WireCompression.Fp16 ? Math.Pow(2, -11) : Math.Pow(2, -8);
        double worst = 0;
        for (int i = 0; i < length; i++)
        {
            double bound = (n * ((u * magnitude[i]) + Math.Pow(2, -25))) + (1e-6 * n * magnitude[i]);
            double error = Math.Abs(buffers[0][i] - expected[i]);
            worst = Math.Max(worst, error / bound);
            if (error > bound)
            {
                Assert.Fail($"Element {i}: expected {expected[i]}, got {buffers[0][i]}, error {error} above the bound {bound}.");
            }
        }

        Assert.All(buffers, b => Assert.Equal(buffers[0], b));

        // Every result is a value of the wire format: what all peers decoded, the owner included.
        var rounded = buffers[0].ToArray();
        HalfCodec.Round(format, rounded);
        Assert.Equal(buffers[0], rounded);
        Assert.All(ring, t => Assert.Equal(0, ((InMemoryRingTransport)t).Mailbox.PendingCount));
    }

    [Fact]
    public async Task Compression_loses_precision_that_float32_keeps_so_the_codec_really_runs()
    {
        // 1 + 2^-12 per peer: exact in float32, not representable in fp16.
        var buffers = Enumerable.Range(0, 2).Select(_ => Enumerable.Repeat(1f + (1f / 4096), 64).ToArray()).ToArray();
        await RunRing(InMemoryRingTransport.CreateRing(2, 16), buffers, WireCompression.Fp16);
        Assert.All(buffers[0], v => Assert.NotEqual(2f + (2f / 4096), v));

        var plain = Enumerable.Range(0, 2).Select(_ => Enumerable.Repeat(1f + (1f / 4096), 64).ToArray()).ToArray();
        await RunRing(InMemoryRingTransport.CreateRing(2, 16), plain, WireCompression.None);
        Assert.All(plain[0], v => Assert.Equal(2f + (2f / 4096), v));
    }

    [Theory]
    [InlineData(WireCompression.Fp16, 2)]
    [InlineData(WireCompression.Bf16, 4)]
    public async Task The_transport_carries_half_the_floats_in_chunks_within_its_limit(WireCompression format, int n)
    {
        const int length = 100_000; // 25,000 or 50,000 per segment: whole chunks of either size
        const int maxChunk = 1000;
        async Task<(long Floats, int Largest)> Sent(WireCompression c)
        {
            var recorders = InMemoryRingTransport.CreateRing(n, maxChunk).Select(t => new CountingTransport(t)).ToArray();
            var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(length, seed: p)).ToArray();
            await RunRing(recorders, buffers, c);
            return (recorders.Sum(r => r.Floats), recorders.Max(r => r.Largest));
        }

        var (plain, plainLargest) = await Sent(WireCompression.None);
        var (compressed, compressedLargest) = await Sent(format);

        Assert.Equal(2L * (n - 1) * length, plain);
        Assert.Equal(plain / 2, compressed);
        Assert.Equal(maxChunk, plainLargest);
        Assert.Equal(maxChunk, compressedLargest); // a full chunk of 2,000 values in 1,000 slots
    }

    [Fact]
    public async Task Peers_that_disagree_on_the_compression_fail_instead_of_mixing_formats()
    {
        var ring = InMemoryRingTransport.CreateRing(2, maxChunkElements: 1000);
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var runs = new[]
        {
            RingAllReduce.RunAsync(ring[0], new float[100], ChunkKey.Call(1, 1, 0, 0), cts.Token, WireCompression.None),
            RingAllReduce.RunAsync(ring[1], new float[100], ChunkKey.Call(1, 1, 0, 0), cts.Token, WireCompression.Fp16),
        };

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => runs[0].WaitAsync(TestData.Timeout));
        Assert.Contains("compression", error.Message);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<Exception>(() => runs[1].WaitAsync(TestData.Timeout));
    }

    private static async Task RunRing(IReadOnlyList<IRingTransport> ring, float[][] buffers, WireCompression format)
    {
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var runs = ring.Select((transport, p) =>
            RingAllReduce.RunAsync(transport, buffers[p], ChunkKey.Call(generation: 3, step: 11, bucket: 2, lane: 0), cts.Token, format));
        await Task.WhenAll(runs).WaitAsync(TestData.Timeout);
    }

    /// <summary>Counts the floats handed to the transport, and the largest chunk.</summary>
    private sealed class CountingTransport(IRingTransport inner) : IRingTransport
    {
        private long floats;
        private int largest;

        public long Floats => Interlocked.Read(ref floats);

        public int Largest => Volatile.Read(ref largest);

        public int PeerIndex => inner.PeerIndex;

        public int PeerCount => inner.PeerCount;

        public int MaxChunkElements => inner.MaxChunkElements;

        public ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
        {
            Interlocked.Add(ref floats, data.Length);
            int seen;
            while (data.Length > (seen = Volatile.Read(ref largest)) && Interlocked.CompareExchange(ref largest, data.Length, seen) != seen)
            {
            }

            return inner.SendAsync(peer, key, data, cancellationToken);
        }

        public ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken) =>
            inner.ReceiveAsync(peer, key, cancellationToken);
    }
}
