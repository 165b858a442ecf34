using System.Diagnostics;
using System.Runtime.InteropServices;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The timed loop every ring transport runs: per iteration refill the buffer, pass a barrier (a
/// tiny all-reduce, so all peers start together), time one all-reduce, check the result exactly.
/// </summary>
internal static class RingMeasurement
{
    public const long Generation = 1;
    private const int DataBucket = 0;
    private const int BarrierBucket = 1;

    /// <summary>
    /// Element i of rank r: (r+1)·(i mod 7 + 1)·0.5 — small halves, so every sum is exact in float32, and
    /// (below 256 in magnitude with at most 8 significant bits: up to 8 peers) in fp16 and bf16 too, so
    /// the exact check holds with compression.
    /// </summary>
    public static float ValueOf(int rank, int i) => (rank + 1) * ((i % 7) + 1) * 0.5f;

    public static float[] Pattern(int length, int rank)
    {
        var values = new float[length];
        for (int i = 0, cycle = 0; i < length; i++, cycle = cycle == 6 ? 0 : cycle + 1)
        {
            values[i] = (rank + 1) * (cycle + 1) * 0.5f;
        }

        return values;
    }

    /// <summary>
    /// Runs the iterations and returns the timed ones' milliseconds. In steady-state mode
    /// (<see cref="RunSpec.ReportEvery"/> &gt; 0) <paramref name="samples"/> receives the process's memory
    /// figures before the first iteration and after every ReportEvery-th.
    /// </summary>
    public static async Task<double[]> MeasureAsync(IRingTransport transport, RunSpec spec, CancellationToken cancellationToken,
        List<MemorySample>? samples = null)
    {
        int n = transport.PeerCount;
        var input = Pattern(spec.Floats, transport.PeerIndex);
        var buffer = new float[spec.Floats];
        var expected = ExpectedSum(spec.Floats, n);
        var barrier = new float[n];
        var times = new List<double>(spec.Iterations);
        int total = spec.Warmup + spec.Iterations;
        if (spec.ReportEvery > 0)
        {
            samples?.Add(MemorySample.Now(0));
        }

        for (int iteration = 0; iteration < total; iteration++)
        {
            input.AsSpan().CopyTo(buffer);
            await BarrierAsync(transport, barrier, iteration, cancellationToken);

            long start = Stopwatch.GetTimestamp();
            await RingAllReduce.RunAsync(transport, buffer, ChunkKey.Call(Generation, iteration, DataBucket, lane: 0), cancellationToken, spec.Compression);
            var elapsed = Stopwatch.GetElapsedTime(start);

            Verify(buffer, expected, iteration);
            if (iteration >= spec.Warmup)
            {
                times.Add(elapsed.TotalMilliseconds);
            }

            if (spec.ReportEvery > 0 && (iteration + 1) % spec.ReportEvery == 0)
            {
                samples?.Add(MemorySample.Now(iteration + 1));
            }
        }

        // Nobody tears down before everyone has everything.
        await BarrierAsync(transport, barrier, total, cancellationToken);
        return [.. times];
    }

    /// <summary>Every peer's sum depends on every peer's contribution: returning means all have arrived.</summary>
    private static async Task BarrierAsync(IRingTransport transport, float[] barrier, long step, CancellationToken cancellationToken)
    {
        Array.Fill(barrier, 1f);
        await RingAllReduce.RunAsync(transport, barrier, ChunkKey.Call(Generation, step, BarrierBucket, lane: 0), cancellationToken);
        if (barrier.Any(v => v != transport.PeerCount))
        {
            throw new InvalidOperationException($"Barrier {step} summed to [{string.Join(", ", barrier)}], expected {transport.PeerCount} everywhere.");
        }
    }

    /// <summary>
    /// The closed form of the all-reduce result over <paramref name="peers"/> peers:
    /// Σ_r (r+1)·(i mod 7 + 1)·0.5 = (i mod 7 + 1)·0.5·N(N+1)/2, exact in float32.
    /// </summary>
    public static float[] ExpectedSum(int length, int peers)
    {
        var expected = Pattern(length, rank: 0);
        float ranksSum = peers * (peers + 1) / 2f;
        for (int i = 0; i < expected.Length; i++)
        {
            expected[i] *= ranksSum;
        }

        return expected;
    }

    /// <summary>Requires <paramref name="buffer"/> to equal <paramref name="expected"/> bit for bit (a vectorized compare).</summary>
    public static void Verify(ReadOnlySpan<float> buffer, ReadOnlySpan<float> expected, long iteration)
    {
        if (MemoryMarshal.AsBytes(buffer).SequenceEqual(MemoryMarshal.AsBytes(expected)))
        {
            return;
        }

        for (int i = 0; i < buffer.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(buffer[i]) != BitConverter.SingleToInt32Bits(expected[i]))
            {
                throw new InvalidOperationException(
                    $"Iteration {iteration}: element {i} is {buffer[i]}, expected {expected[i]} (the all-reduce result is wrong).");
            }
        }
    }
}
