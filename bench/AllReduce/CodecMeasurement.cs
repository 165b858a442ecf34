using System.Diagnostics;
using System.Globalization;
using ActorTrain.Sync.Compression;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The cost of the 16-bit wire formats on one core: encode (what a sender does per chunk),
/// decode + add (a reduce-scatter receive), decode (an all-gather receive) and round (the owner
/// of a reduced chunk), each over one chunk of <c>values</c> floats, repeated.
/// </summary>
internal static class CodecMeasurement
{
    public static int Run(int values, int iterations)
    {
        if (values < 1) throw new ArgumentException($"--values must be at least 1, got {values}");
        if (iterations < 1) throw new ArgumentException($"--iterations must be at least 1, got {iterations}");
        var random = new Random(1);
        var source = new float[values];
        for (int i = 0; i < values; i++)
        {
            source[i] = (float)((random.NextDouble() * 2) - 1) * 1e-2f; // gradient-like magnitudes
        }

        var packed = new float[HalfCodec.PackedLength(values)];
        var target = new float[values];
        Console.WriteLine("format, values, encode_GBps, decode_add_GBps, decode_GBps, round_GBps");
        foreach (var format in new[] { WireCompression.Fp16, WireCompression.Bf16 })
        {
            double Rate(Action once)
            {
                for (int i = 0; i < Math.Max(10, iterations / 10); i++) once();
                long start = Stopwatch.GetTimestamp();
                for (int i = 0; i < iterations; i++) once();
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                return (double)values * sizeof(float) * iterations / seconds / 1e9;
            }

            double encode = Rate(() => HalfCodec.Encode(format, source, packed));
            double decodeAdd = Rate(() =>
            {
                source.AsSpan().CopyTo(target);
                HalfCodec.DecodeAdd(format, packed, target);
            });
            double decode = Rate(() => HalfCodec.Decode(format, packed, target));
            double round = Rate(() =>
            {
                source.AsSpan().CopyTo(target);
                HalfCodec.Round(format, target);
            });
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{format.ToName()}, {values}, {encode:F2}, {decodeAdd:F2}, {decode:F2}, {round:F2}"));
        }

        Console.Error.WriteLine("# GB/s of float32 values processed, one thread; decode_add and round include a copy that refills the target");
        return 0;
    }
}
