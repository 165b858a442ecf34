using System.Globalization;
using System.Text.Json;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// One run's figures, with nccl-tests' definitions: algbw = bytes / time; busbw = algbw · 2(N−1)/N,
/// the rate each node's links must sustain in a ring all-reduce, comparable to a link's bandwidth.
/// The time of an iteration is the slowest rank's (the collective is done when the last peer is);
/// the reported time is the mean over the timed iterations. The socket ceiling is point to point:
/// its busbw is its algbw.
/// </summary>
internal sealed record RunResult(RunSpec Spec, double[] TimesMs, string? Error)
{
    public bool Ok => Error is null && TimesMs.Length > 0;

    /// <summary>Steady-state mode: each worker's memory samples, by rank (empty otherwise).</summary>
    public MemorySample[][] Samples { get; init; } = [];

    /// <summary>CPU seconds the workers used over their measurement (all of them together).</summary>
    public double WorkerCpuSeconds { get; init; } = double.NaN;

    /// <summary>CPU seconds the whole machine was busy while the workers measured (from /proc/stat).</summary>
    public double MachineBusySeconds { get; init; } = double.NaN;

    /// <summary>Wall seconds of that window.</summary>
    public double WindowSeconds { get; init; } = double.NaN;

    /// <summary>Cores' worth of CPU that everything else on the machine used meanwhile (0 on a quiet machine).</summary>
    public double OtherLoadCores => Math.Max(0, (MachineBusySeconds - WorkerCpuSeconds) / WindowSeconds);

    /// <summary>Cores' worth of CPU the workers used while measuring.</summary>
    public double WorkerCores => WorkerCpuSeconds / WindowSeconds;

    public double MeanMs => Ok ? TimesMs.Average() : double.NaN;

    public double MedianMs => Ok ? Median(TimesMs) : double.NaN;

    public double MinMs => Ok ? TimesMs.Min() : double.NaN;

    public double AlgBwGBps => Ok ? Spec.Bytes / (MeanMs / 1000) / 1e9 : double.NaN;

    public double BusBwGBps => Spec.Transport == BenchTransport.Socket
        ? AlgBwGBps
        : AlgBwGBps * 2 * (Spec.Nodes - 1) / Spec.Nodes;

    /// <summary>Combines the workers' reports: per iteration the slowest rank, or rank 0's for the socket ceiling.</summary>
    public static RunResult From(RunSpec spec, IReadOnlyList<WorkerResult> workers)
    {
        var timed = workers.Where(w => w.TimesMs.Length > 0).ToArray();
        if (timed.Length == 0 || timed.Any(w => w.TimesMs.Length != spec.Iterations))
        {
            return new RunResult(spec, [], $"workers reported {string.Join("/", workers.Select(w => w.TimesMs.Length))} times, expected {spec.Iterations}");
        }

        var perIteration = Enumerable.Range(0, spec.Iterations).Select(i => timed.Max(w => w.TimesMs[i])).ToArray();
        return new RunResult(spec, perIteration, null)
        {
            WorkerCpuSeconds = workers.Sum(w => w.CpuSeconds),
            Samples = [.. workers.OrderBy(w => w.Rank).Select(w => w.Samples ?? [])],
        };
    }

    public static string CsvHeader => "nodes, bytes, transport, mean_ms, algbw_GBps, busbw_GBps";

    /// <summary>nodes, bytes, transport, mean_ms, algbw_GBps, busbw_GBps</summary>
    public string CsvLine => Ok
        ? string.Create(CultureInfo.InvariantCulture, $"{Spec.Processes}, {Spec.Bytes}, {Spec.Label}, {MeanMs:F3}, {AlgBwGBps:F4}, {BusBwGBps:F4}")
        : string.Create(CultureInfo.InvariantCulture, $"{Spec.Processes}, {Spec.Bytes}, {Spec.Label}, failed: {Error}");

    /// <summary>Where the CPU went while measuring, for stderr.</summary>
    public string LoadNote => string.Create(CultureInfo.InvariantCulture,
        $"# {Spec.Label}: workers used {WorkerCores:0.00} cores, everything else {OtherLoadCores:0.00} cores (of {Environment.ProcessorCount}) over {WindowSeconds:0.0} s");

    public string ToJson() => JsonSerializer.Serialize(new
    {
        timestamp = DateTimeOffset.UtcNow,
        machine = new { cores = Environment.ProcessorCount, os = System.Runtime.InteropServices.RuntimeInformation.OSDescription, runtime = Environment.Version.ToString() },
        nodes = Spec.Processes,
        bytes = Spec.Bytes,
        transport = Spec.Label,
        chunk_bytes = Spec.EffectiveChunkBytes,
        iterations = Spec.Iterations,
        warmup = Spec.Warmup,
        ok = Ok,
        error = Error,
        mean_ms = Ok ? MeanMs : (double?)null,
        median_ms = Ok ? MedianMs : (double?)null,
        min_ms = Ok ? MinMs : (double?)null,
        algbw_GBps = Ok ? AlgBwGBps : (double?)null,
        busbw_GBps = Ok ? BusBwGBps : (double?)null,
        worker_cpu_s = Round(WorkerCpuSeconds),
        window_s = Round(WindowSeconds),
        worker_cores = Round(WorkerCores),
        other_load_cores = Round(OtherLoadCores),
        load_average = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : null,
        compression = ActorTrain.Sync.Compression.WireCompressionNames.ToName(Spec.Compression),
        steady = Samples.Any(s => s.Length > 0)
            ? Samples.Select(rank => rank.Select(m => new
            {
                iterations = m.Iterations, gen0 = m.Gen0, gen1 = m.Gen1, gen2 = m.Gen2,
                allocated_bytes = m.AllocatedBytes, working_set_bytes = m.WorkingSetBytes, heap_bytes = m.HeapBytes,
            }).ToArray()).ToArray()
            : null,
        times_ms = TimesMs,
    });

    /// <summary>
    /// Steady-state mode: per rank, one line per sample — iterations, GC collections of each
    /// generation, managed bytes allocated per all-reduce since the previous sample, RSS and managed heap.
    /// </summary>
    public IEnumerable<string> SteadyLines()
    {
        yield return "rank, iterations, gen0, gen1, gen2, alloc_KiB_per_iter, rss_MiB, heap_MiB";
        for (int rank = 0; rank < Samples.Length; rank++)
        {
            MemorySample? previous = null;
            foreach (var s in Samples[rank])
            {
                string perIteration = previous is null || s.Iterations == previous.Iterations
                    ? "-"
                    : ((s.AllocatedBytes - previous.AllocatedBytes) / 1024.0 / (s.Iterations - previous.Iterations)).ToString("F1", CultureInfo.InvariantCulture);
                yield return string.Create(CultureInfo.InvariantCulture,
                    $"{rank}, {s.Iterations}, {s.Gen0}, {s.Gen1}, {s.Gen2}, {perIteration}, {s.WorkingSetBytes / 1048576.0:F1}, {s.HeapBytes / 1048576.0:F1}");
                previous = s;
            }
        }
    }

    private static double? Round(double value) => double.IsFinite(value) ? Math.Round(value, 3) : null;

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
