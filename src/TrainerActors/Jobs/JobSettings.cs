using System.Globalization;
using ActorTrain.Cluster.Settings;
using Akka.Configuration;

namespace ActorTrain.TrainerActors.Jobs;

/// <summary>
/// The job's own settings: the keys under <c>actortrain.job</c>, layered like every other key (flags and
/// <c>--set</c>, then <c>ACTORTRAIN__JOB__…</c> variables, then config files, then the job's
/// <see cref="TrainingJob.DefaultConfig"/>). A job reads them in <see cref="TrainingJob.Configure"/>;
/// every node of a run must have the same, or the coordinator refuses it. A value that is missing
/// or of the wrong kind is a <see cref="SettingsException"/> naming the key, which the host reports
/// as a usage error (exit code 2) before the node starts.
/// </summary>
public sealed class JobSettings
{
    private readonly Config _config;

    /// <param name="config">The node's whole configuration; only <c>actortrain.job</c> is read.</param>
    public JobSettings(Config config)
    {
        _config = config;
        Entries = JobSection.Entries(config);
    }

    /// <summary>Every key under <c>actortrain.job</c> (without the prefix) and its value, sorted by key.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Entries { get; }

    public bool Has(string key) => _config.HasPath(PathOf(key));

    public string GetString(string key) => Raw(key);

    public int GetInt(string key) => Parse(key, "a whole number", (string s, out int v) => int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out v));

    public long GetLong(string key) => Parse(key, "a whole number", (string s, out long v) => long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out v));

    public double GetDouble(string key) =>
        Parse(key, "a number", (string s, out double v) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out v) && double.IsFinite(v));

    public bool GetBool(string key) => Raw(key) switch
    {
        "on" or "true" or "yes" => true,
        "off" or "false" or "no" => false,
        var other => throw new SettingsException(PathOf(key), $"expected on or off, got \"{other}\""),
    };

    /// <summary>A whole number no smaller than <paramref name="min"/>.</summary>
    public int GetInt(string key, int min)
    {
        var value = GetInt(key);
        return value >= min ? value : throw new SettingsException(PathOf(key), $"must be at least {min}, got {value}");
    }

    private delegate bool TryParse<T>(string text, out T value);

    private T Parse<T>(string key, string kind, TryParse<T> tryParse)
    {
        var text = Raw(key);
        return tryParse(text, out var value) ? value : throw new SettingsException(PathOf(key), $"expected {kind}, got \"{text}\"");
    }

    private string Raw(string key)
    {
        var path = PathOf(key);
        if (!_config.HasPath(path))
            throw new SettingsException(path, "is not set; the job reads it (set it in the job's DefaultConfig, a --config file, with --set, or in the environment)");
        var value = _config.GetValue(path);
        if (value.IsObject() || value.IsArray()) throw new SettingsException(path, "expected a single value, got an object or a list");
        return value.GetString() ?? "";
    }

    private static string PathOf(string key)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(key);
        return $"{JobSection.Path}.{key}";
    }
}
