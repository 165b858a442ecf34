using ActorTrain.Cluster.Settings;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>A configuration problem the user must fix; the host prints it and exits with code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// Layers a node's configuration: command-line flags and <c>--set</c> > the environment
/// (<see cref="SettingsOverrides.FromEnvironment"/>) > --config file > the job's defaults > the
/// host's defaults (the console host's host.conf) > ActorTrain's reference.conf > Akka's, and
/// validates it. Every error names the file, variable or flag, and the key.
/// </summary>
internal static class ConfigLoader
{
    public static (Config Config, ActorTrainSettings Settings) Load(string? configFile, string jobDefaults, string jobName,
        IReadOnlyList<string> overrides, ConfigLayers? layers = null) =>
        Load(configFile, configFile is null ? null : ReadFile(configFile), jobDefaults, jobName, overrides, layers);

    /// <summary>Same, with the config file already read (it may be a pipe that reads only once).</summary>
    /// <param name="configureJob">Given the loaded configuration (the job's <see cref="Jobs.TrainingJob.Configure"/>); its errors are reported like the settings'.</param>
    public static (Config Config, ActorTrainSettings Settings) Load(string? configFile, string? configText, string jobDefaults, string jobName,
        IReadOnlyList<string> overrides, ConfigLayers? layers = null, Action<Config>? configureJob = null)
    {
        layers ??= ConfigLayers.Process;
        var source = configFile ?? "(no --config file)";
        var commandLine = ConfigurationFactory.Empty;
        foreach (var line in overrides)
            commandLine = commandLine.WithFallback(Parse(line, "command line"));
        var (environment, variableOfKey) = SettingsOverrides.FromEnvironment(layers.Environment ?? SettingsOverrides.ProcessEnvironment());
        var layered = commandLine.WithFallback(environment);
        if (configFile is not null && configText is not null)
            layered = layered.WithFallback(Parse(configText, configFile, Path.GetDirectoryName(Path.GetFullPath(configFile))));
        if (!string.IsNullOrWhiteSpace(jobDefaults)) layered = layered.WithFallback(Parse(jobDefaults, $"defaults of job {jobName}"));
        if (!string.IsNullOrWhiteSpace(layers.HostDefaults)) layered = layered.WithFallback(Parse(layers.HostDefaults, "the host's defaults"));
        var config = layered.WithFallback(ActorTrainSettings.DefaultConfig());

        try
        {
            var settings = ActorTrainSettings.Create(config);
            if (string.IsNullOrEmpty(settings.JobId)) settings = settings with { JobId = jobName };
            configureJob?.Invoke(config);
            return (config, settings);
        }
        catch (SettingsException e)
        {
            // A bad value from the environment names its variable, not the config file.
            if (!commandLine.HasPath(e.Path) && variableOfKey.TryGetValue(e.Path, out var variable))
                throw new UsageException($"environment variable {variable}: {e.Message}");
            throw new UsageException($"{source}: {e.Message}");
        }
    }

    public static string ReadFile(string configFile)
    {
        if (!File.Exists(configFile)) throw new UsageException($"{configFile}: config file not found");
        try { return File.ReadAllText(configFile); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UsageException($"{configFile}: cannot read: {e.Message}"); }
    }

    private static Config Parse(string text, string source, string? directory = null)
    {
        if (UnbalancedBrackets(text) is { } problem) throw new UsageException($"{source}: invalid HOCON: {problem}");
        try
        {
            return ConfigurationFactory.ParseString(text, Includes(source, directory ?? Directory.GetCurrentDirectory(), depth: 0));
        }
        catch (UsageException)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new UsageException($"{source}: invalid HOCON: {e.Message.Split('\n')[0].Trim()}");
        }
    }

    /// <summary>
    /// Resolves <c>include "file"</c> relative to the including file's folder (e.g. hocon/tls.conf
    /// beside hocon/worker.conf); a missing file is an error naming both files.
    /// </summary>
    private static Func<string, HoconRoot> Includes(string source, string directory, int depth) => name =>
    {
        if (depth >= 8) throw new UsageException($"{source}: include \"{name}\": includes nested more than 8 deep (a file including itself?)");
        var path = Path.GetFullPath(Path.Combine(directory, name));
        if (!File.Exists(path)) throw new UsageException($"{source}: include \"{name}\": file not found: {path}");
        var text = ReadFile(path);
        if (UnbalancedBrackets(text) is { } problem) throw new UsageException($"{path}: invalid HOCON: {problem}");
        return Parser.Parse(text, Includes(path, Path.GetDirectoryName(path)!, depth + 1));
    };

    /// <summary>
    /// Akka's HOCON parser accepts a file whose last object is never closed, silently dropping
    /// nothing but the user's intent; this finds unbalanced braces and brackets outside strings
    /// and comments, with the line of the culprit.
    /// </summary>
    internal static string? UnbalancedBrackets(string text)
    {
        var open = new Stack<(char Bracket, int Line)>();
        var line = 1;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\n') { line++; continue; }
            if (c == '#' || (c == '/' && i + 1 < text.Length && text[i + 1] == '/'))
            {
                while (i + 1 < text.Length && text[i + 1] != '\n') i++;
                continue;
            }
            if (c == '"')
            {
                var triple = i + 2 < text.Length && text[i + 1] == '"' && text[i + 2] == '"';
                if (triple)
                {
                    var end = text.IndexOf("\"\"\"", i + 3, StringComparison.Ordinal);
                    if (end < 0) return $"line {line}: unterminated \"\"\" string";
                    line += text.AsSpan(i, end - i).Count('\n');
                    i = end + 2;
                    continue;
                }
                for (i++; i < text.Length && text[i] != '"'; i++)
                {
                    if (text[i] == '\\') i++;
                    else if (text[i] == '\n') return $"line {line}: unterminated string";
                }
                if (i >= text.Length) return $"line {line}: unterminated string";
                continue;
            }
            if (c is '{' or '[') open.Push((c, line));
            else if (c is '}' or ']')
            {
                var expected = c == '}' ? '{' : '[';
                if (open.Count == 0) return $"line {line}: '{c}' without a matching '{expected}'";
                var top = open.Pop();
                if (top.Bracket != expected) return $"line {line}: '{c}' closes the '{top.Bracket}' opened on line {top.Line}";
            }
        }
        return open.Count > 0 ? $"'{open.Peek().Bracket}' opened on line {open.Peek().Line} is never closed" : null;
    }

    /// <summary>Quotes a value for a HOCON override line.</summary>
    public static string Quote(string value) =>
        "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
}

/// <summary>
/// The layers of a node's configuration that come from its surroundings rather than from the
/// command line or a file.
/// </summary>
/// <param name="Environment">The variables to read ACTORTRAIN__/AKKA__ settings from; null: this process's.</param>
/// <param name="HostDefaults">HOCON the host places just above ActorTrain's reference.conf: the Akka settings that belong to the application (logging, downing, shutdown).</param>
internal sealed record ConfigLayers(IReadOnlyDictionary<string, string>? Environment = null, string HostDefaults = "")
{
    public static ConfigLayers Process { get; } = new();
}
