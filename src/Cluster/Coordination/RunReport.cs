using System.Text.Json;
using System.Text.Json.Serialization;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// What <c>run-report.json</c> holds; written by the coordinator when a run ends. Its epochs and
/// generations are the records of the run's history (<see cref="RunHistory"/>).
/// </summary>
public sealed record RunReport
{
    [JsonPropertyName("job_id")] public required string JobId { get; init; }
    [JsonPropertyName("status")] public required string Status { get; init; }
    [JsonPropertyName("world_size")] public required int WorldSize { get; init; }
    [JsonPropertyName("nodes")] public required IReadOnlyList<ReportNode> Nodes { get; init; }
    [JsonPropertyName("epochs")] public required int Epochs { get; init; }
    [JsonPropertyName("steps")] public required long Steps { get; init; }
    [JsonPropertyName("skipped_steps")] public required int SkippedSteps { get; init; }
    [JsonPropertyName("global_batch")] public required int GlobalBatch { get; init; }
    [JsonPropertyName("seed")] public required int Seed { get; init; }
    [JsonPropertyName("final_loss")] public required double FinalLoss { get; init; }
    /// <summary>The job's evaluation metrics after the last epoch, written at the top level under their own names.</summary>
    [JsonExtensionData] public Dictionary<string, object> MetricsJson { get; init; } = [];
    [JsonIgnore] public IReadOnlyDictionary<string, double> Metrics
    {
        get => JobMetrics.FromJson(MetricsJson);
        init => MetricsJson = JobMetrics.ToJson(value);
    }
    [JsonPropertyName("epoch_history")] public required IReadOnlyList<EpochRecord> EpochHistory { get; init; }
    [JsonPropertyName("generations")] public IReadOnlyList<GenerationRecord> Generations { get; init; } = [];
    [JsonPropertyName("steps_redone")] public int StepsRedone { get; init; }
    [JsonPropertyName("replica_checksums")] public required IReadOnlyDictionary<string, string> ReplicaChecksums { get; init; }
    [JsonPropertyName("replicas_equal")] public required bool ReplicasEqual { get; init; }
    [JsonPropertyName("timings_ms")] public required ReportTimings TimingsMs { get; init; }
    [JsonPropertyName("timings_ms_per_rank")] public required IReadOnlyDictionary<string, ReportTimings> TimingsMsPerRank { get; init; }
    [JsonPropertyName("wall_seconds")] public required double WallSeconds { get; init; }
    [JsonPropertyName("model_path")] public string? ModelPath { get; init; }
    [JsonPropertyName("loss_curve")] public IReadOnlyList<ReportLossPoint> LossCurve { get; init; } = [];

    // A loss is NaN when no step of an epoch counted (e.g. all skipped); JSON has no number for it.
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Writes the report atomically: a reader never sees half a file.</summary>
    public string WriteTo(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, "run-report.json");
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, ToJson());
        File.Move(tmp, path, overwrite: true);
        return Path.GetFullPath(path);
    }

    /// <summary>Writes the report (see <see cref="WriteTo"/>); null with the reason in <paramref name="error"/> when the directory cannot take it.</summary>
    public string? TryWriteTo(string directory, out string error)
    {
        error = "";
        try
        {
            return WriteTo(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = e.Message;
            return null;
        }
    }
}

public sealed record ReportNode(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("first_rank")] int FirstRank,
    [property: JsonPropertyName("trainers")] int Trainers,
    [property: JsonPropertyName("devices")] IReadOnlyList<string> Devices);

public sealed record ReportTimings(
    [property: JsonPropertyName("compute")] double Compute,
    [property: JsonPropertyName("intra_node")] double IntraNode,
    [property: JsonPropertyName("cross_node")] double CrossNode,
    [property: JsonPropertyName("step")] double Step)
{
    /// <summary>The median (mean of the middle two for an even count); 0 for no values.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        if (v.Length == 0) return 0;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}

/// <summary>Rank 0's mean loss over all replicas for the log window ending at <see cref="Step"/>.</summary>
public sealed record ReportLossPoint(
    [property: JsonPropertyName("step")] long Step,
    [property: JsonPropertyName("loss")] double Loss);

/// <summary>Published on the coordinator's local event stream once run-report.json is written (e.g. for plots).</summary>
public sealed record RunReportWritten(RunReport Report, string Directory);

/// <summary>A job's evaluation metrics (see <c>TrainingJob.Evaluate</c>) as reports and logs show them.</summary>
public static class JobMetrics
{
    /// <summary>", test accuracy 0.9330, test mse 0.0123" for a log line; "" for none. Underscores in names read as spaces.</summary>
    public static string Describe(IReadOnlyDictionary<string, double> metrics) =>
        string.Concat(metrics.Select(m => FormattableString.Invariant($", {m.Key.Replace('_', ' ')} {m.Value:F4}")));

    private static readonly HashSet<string> ReportFields = typeof(RunReport).GetProperties().Concat(typeof(EpochRecord).GetProperties())
        .Select(p => p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), true).OfType<JsonPropertyNameAttribute>().FirstOrDefault()?.Name)
        .OfType<string>().ToHashSet();

    /// <summary>
    /// Checks the names a job gave its metrics: lower-case letters, digits and underscores, starting
    /// with a letter, and none that the report uses for a field of its own.
    /// </summary>
    /// <exception cref="ArgumentException">A name that breaks the rule, named in the message.</exception>
    public static void Validate(IReadOnlyDictionary<string, double> metrics, string job)
    {
        foreach (var name in metrics.Keys)
        {
            if (name.Length == 0 || !char.IsAsciiLetterLower(name[0]) || !name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_'))
                throw new ArgumentException($"job '{job}': metric name '{name}' must be lower-case letters, digits and '_', starting with a letter");
            if (ReportFields.Contains(name))
                throw new ArgumentException($"job '{job}': metric name '{name}' is a field of run-report.json already; choose another");
        }
    }

    internal static Dictionary<string, object> ToJson(IReadOnlyDictionary<string, double> metrics) =>
        metrics.ToDictionary(m => m.Key, m => (object)m.Value);

    /// <summary>Reads the metrics back from a parsed report: every extra field that holds a number.</summary>
    internal static IReadOnlyDictionary<string, double> FromJson(Dictionary<string, object> fields)
    {
        var metrics = new Dictionary<string, double>();
        foreach (var (name, value) in fields)
        {
            switch (value)
            {
                case double d: metrics[name] = d; break;
                case JsonElement { ValueKind: JsonValueKind.Number } e: metrics[name] = e.GetDouble(); break;
                case JsonElement { ValueKind: JsonValueKind.String } e when double.TryParse(e.GetString(), System.Globalization.CultureInfo.InvariantCulture, out var d): metrics[name] = d; break;
            }
        }
        return metrics;
    }
}
