using ActorTrain.Cluster.Settings;
using Akka.Configuration;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>A configuration problem the user must fix; the host prints it and exits with code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// Layers a node's configuration: command-line overrides > --config file > the job's defaults >
/// ActorTrain's reference.conf > Akka's, and validates it. Every error names the file and the key.
/// </summary>
public static class ConfigLoader
{
    public static (Config Config, ActorTrainSettings Settings) Load(string? configFile, string jobDefaults, string jobName,
        IReadOnlyList<string> overrides)
    {
        var source = configFile ?? "(no --config file)";
        var layered = ConfigurationFactory.Empty;
        foreach (var line in overrides)
            layered = layered.WithFallback(Parse(line, "command line"));
        if (configFile is not null)
        {
            if (!File.Exists(configFile)) throw new UsageException($"{configFile}: config file not found");
            string text;
            try { text = File.ReadAllText(configFile); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UsageException($"{configFile}: cannot read: {e.Message}"); }
            layered = layered.WithFallback(Parse(text, configFile));
        }
        if (!string.IsNullOrWhiteSpace(jobDefaults)) layered = layered.WithFallback(Parse(jobDefaults, $"defaults of job {jobName}"));
        var config = layered.WithFallback(ActorTrainSettings.DefaultConfig());

        try
        {
            var settings = ActorTrainSettings.Create(config);
            if (string.IsNullOrEmpty(settings.JobId)) settings = settings with { JobId = jobName };
            return (config, settings);
        }
        catch (SettingsException e)
        {
            throw new UsageException($"{source}: {e.Message}");
        }
    }

    private static Config Parse(string text, string source)
    {
        try
        {
            return ConfigurationFactory.ParseString(text);
        }
        catch (Exception e)
        {
            throw new UsageException($"{source}: invalid HOCON: {e.Message.Split('\n')[0].Trim()}");
        }
    }

    /// <summary>Quotes a value for a HOCON override line.</summary>
    public static string Quote(string value) =>
        "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
}
