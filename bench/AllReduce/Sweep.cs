using System.Globalization;
using System.Text;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The standard matrix: the seed CNN's gradient (431,080 floats), 16 MiB and 100 MiB; 2, 3 and 4
/// nodes; the chunked Akka transport, one Akka message per ring segment, the TCP data plane; and the
/// plain-socket ceiling per size. Iteration counts shrink with size and transport speed so every run
/// stays short; every run also has a timeout.
/// </summary>
internal static class Sweep
{
    public const long SeedCnnBytes = 431_080L * sizeof(float);
    public static readonly long[] Sizes = [SeedCnnBytes, 16L << 20, 100L << 20];
    public static readonly int[] NodeCounts = [2, 3, 4];

    public static IEnumerable<RunSpec> Specs()
    {
        foreach (long bytes in Sizes)
        {
            yield return Spec(2, bytes, BenchTransport.Socket, wholeBucket: false);
            foreach (int nodes in NodeCounts)
            {
                yield return Spec(nodes, bytes, BenchTransport.Tcp, wholeBucket: false);
                yield return Spec(nodes, bytes, BenchTransport.Akka, wholeBucket: false);
                yield return Spec(nodes, bytes, BenchTransport.Akka, wholeBucket: true);
            }
        }
    }

    public static RunSpec Spec(int nodes, long bytes, BenchTransport transport, bool wholeBucket, int? iterations = null, int? warmup = null)
    {
        var (defaultIterations, defaultWarmup) = DefaultIterations(bytes, transport);
        int i = iterations ?? defaultIterations;
        int w = warmup ?? defaultWarmup;
        return new RunSpec
        {
            Nodes = nodes,
            Bytes = bytes,
            Transport = transport,
            AkkaWholeBucket = wholeBucket,
            Iterations = i,
            Warmup = w,
            Timeout = DefaultTimeout(bytes, transport, i + w),
        };
    }

    /// <summary>Akka remoting moves about 0.1 GB/s here: a few iterations of the big sizes are all it gets.</summary>
    public static (int Iterations, int Warmup) DefaultIterations(long bytes, BenchTransport transport) => (transport, bytes) switch
    {
        (BenchTransport.Akka, <= 4L << 20) => (10, 2),
        (BenchTransport.Akka, <= 32L << 20) => (5, 1),
        (BenchTransport.Akka, _) => (2, 1),
        (_, <= 4L << 20) => (50, 5),
        (_, <= 32L << 20) => (20, 3),
        (_, _) => (8, 2),
    };

    /// <summary>Start-up allowance plus every iteration at a pessimistic rate (20 MB/s for Akka, 100 MB/s otherwise), capped at 15 minutes.</summary>
    public static TimeSpan DefaultTimeout(long bytes, BenchTransport transport, int iterations)
    {
        double floorRate = transport == BenchTransport.Akka ? 20e6 : 100e6;
        double seconds = 60 + (2.0 * bytes * (iterations + 1) / floorRate);
        return TimeSpan.FromSeconds(Math.Min(seconds, 900));
    }

    public static async Task<int> RunAsync(int repeat, string? jsonFile, bool verbose, CancellationToken cancellationToken)
    {
        var specs = Specs().ToList();
        var results = new List<RunResult>();
        Console.WriteLine(RunResult.CsvHeader);
        foreach (var spec in specs)
        {
            Console.Error.WriteLine($"-- {spec.Label}, {spec.Processes} processes, {ByteSize.Format(spec.Bytes)} ({spec.Bytes} B), {spec.Warmup}+{spec.Iterations} iterations, best of {repeat}");
            var result = await Launcher.RunBestOfAsync(spec, repeat, verbose, cancellationToken);
            results.Add(result);
            Console.WriteLine(result.CsvLine);
            if (result.Ok)
            {
                Console.Error.WriteLine(result.LoadNote);
            }

            if (jsonFile is not null)
            {
                await File.AppendAllTextAsync(jsonFile, result.ToJson() + "\n", cancellationToken);
            }
        }

        Console.WriteLine();
        Console.WriteLine(Table(results));
        return results.All(r => r.Ok) ? 0 : 1;
    }

    /// <summary>busbw per size and node count, side by side, with the ratios the performance goals are stated in.</summary>
    public static string Table(IReadOnlyList<RunResult> results)
    {
        string F(double v) => double.IsNaN(v) ? "–" : v.ToString("0.000", CultureInfo.InvariantCulture);
        string P(double v) => double.IsNaN(v) || double.IsInfinity(v) ? "–" : v.ToString("0%", CultureInfo.InvariantCulture);
        string X(double v) => double.IsNaN(v) || double.IsInfinity(v) ? "–" : v.ToString("0.00", CultureInfo.InvariantCulture) + "×";
        double Bus(long bytes, int nodes, string label) =>
            results.FirstOrDefault(r => r.Spec.Bytes == bytes && r.Spec.Processes == nodes && r.Spec.Label == label) is { Ok: true } r ? r.BusBwGBps : double.NaN;
        double Mean(long bytes, int nodes, string label) =>
            results.FirstOrDefault(r => r.Spec.Bytes == bytes && r.Spec.Processes == nodes && r.Spec.Label == label) is { Ok: true } r ? r.MeanMs : double.NaN;

        var table = new StringBuilder();
        table.AppendLine("busbw in GB/s (1 GB = 1e9 B); mean time per all-reduce in ms in brackets");
        table.AppendLine("| size | nodes | socket ceiling | tcp | akka (chunked) | akka (1 msg/segment) | tcp / ceiling | akka chunked / 1 msg |");
        table.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (long bytes in results.Select(r => r.Spec.Bytes).Distinct())
        {
            double ceiling = Bus(bytes, 2, "socket");
            foreach (int nodes in results.Where(r => r.Spec.Bytes == bytes && r.Spec.Transport != BenchTransport.Socket).Select(r => r.Spec.Nodes).Distinct().Order())
            {
                double tcp = Bus(bytes, nodes, "tcp");
                double akka = Bus(bytes, nodes, "akka");
                double whole = Bus(bytes, nodes, "akka-whole");
                table.AppendLine(
                    $"| {ByteSize.Format(bytes)} | {nodes} | {F(ceiling)} | {F(tcp)} ({F(Mean(bytes, nodes, "tcp"))}) | " +
                    $"{F(akka)} ({F(Mean(bytes, nodes, "akka"))}) | {F(whole)} ({F(Mean(bytes, nodes, "akka-whole"))}) | " +
                    $"{P(tcp / ceiling)} | {X(akka / whole)} |");
            }
        }

        return table.ToString();
    }
}
