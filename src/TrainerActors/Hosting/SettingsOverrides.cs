using System.Collections;
using System.Text.RegularExpressions;
using ActorTrain.Cluster.Settings;
using Akka.Configuration;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>
/// Settings given outside any file: environment variables and <c>--set key=value</c>.
/// <para>
/// The environment rule: a variable named <c>ACTORTRAIN__…</c> or <c>AKKA__…</c> sets the key
/// whose path segments are joined by <c>__</c> in its name, with <c>-</c> inside a segment
/// written as <c>_</c>, in any case: <c>ACTORTRAIN__TRAINING__OUT_DIR</c> sets
/// <c>actortrain.training.out-dir</c>, <c>AKKA__REMOTE__DOT_NETTY__TCP__PORT</c> sets
/// <c>akka.remote.dot-netty.tcp.port</c>. <see cref="ClusterSecretSettings.EnvironmentVariable"/>
/// stays an alias of <c>actortrain.cluster-secret</c>.
/// </para>
/// <para>
/// Values (of both): one that starts with <c>[</c>, <c>{</c> or <c>"</c> is HOCON (a list, an
/// object, a quoted string); anything else is taken as written, as a string, which HOCON turns
/// into a number, a duration, a size or a switch where the key wants one.
/// </para>
/// </summary>
internal static partial class SettingsOverrides
{
    private static readonly string[] Prefixes = ["ACTORTRAIN__", "AKKA__"];

    /// <summary>
    /// The settings in <paramref name="environment"/>'s ACTORTRAIN__/AKKA__ variables (the alias of
    /// the cluster secret below them), and which variable set each key.
    /// </summary>
    public static (Config Config, IReadOnlyDictionary<string, string> VariableOfKey) FromEnvironment(IReadOnlyDictionary<string, string> environment)
    {
        var layered = ConfigurationFactory.Empty;
        var keys = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in environment.OrderBy(v => v.Key, StringComparer.Ordinal))
        {
            if (!Prefixes.Any(p => name.StartsWith(p, StringComparison.OrdinalIgnoreCase))) continue;
            var source = $"environment variable {name}";
            var key = KeyOf(name);
            if (keys.TryGetValue(key, out var other))
                throw new UsageException($"{source}: sets {key}, as {other} does; set it once");
            keys[key] = name;
            layered = layered.WithFallback(ConfigurationFactory.ParseString(Line(key, value, source)));
        }
        environment.TryGetValue(ClusterSecretSettings.EnvironmentVariable, out var secret);
        return (layered.WithFallback(ClusterSecretSettings.FromEnvironment(secret)), keys);
    }

    /// <summary>This process's environment variables.</summary>
    public static IReadOnlyDictionary<string, string> ProcessEnvironment() =>
        Environment.GetEnvironmentVariables().Cast<DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal);

    /// <summary>The HOCON key an ACTORTRAIN__/AKKA__ variable sets, e.g. <c>AKKA__REMOTE__DOT_NETTY__TCP__PORT</c> → <c>akka.remote.dot-netty.tcp.port</c>.</summary>
    public static string KeyOf(string variable)
    {
        var segments = variable.Split("__");
        if (segments.Length < 2 || segments.Any(s => s.Length == 0))
            throw new UsageException($"environment variable {variable}: expected segments joined by __, e.g. ACTORTRAIN__TRAINING__EPOCHS (an empty segment here)");
        if (!segments.All(s => s.All(c => char.IsAsciiLetterOrDigit(c) || c == '_')))
            throw new UsageException($"environment variable {variable}: a key segment may hold letters, digits and _ (for -) only");
        return string.Join('.', segments.Select(s => s.Replace('_', '-').ToLowerInvariant()));
    }

    /// <summary>One <c>--set key=value</c> argument as a HOCON line (<c>key = value</c>); errors name the argument.</summary>
    public static string FromSetArgument(string argument)
    {
        var source = $"--set {argument}";
        var eq = argument.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0) throw new UsageException($"{source}: expected key=value, e.g. --set actortrain.training.epochs=3");
        var key = argument[..eq].Trim();
        if (!KeyPattern().IsMatch(key))
            throw new UsageException($"{source}: \"{key}\" is not a key: dot-separated segments of letters, digits, - and _");
        return Line(key, argument[(eq + 1)..], source);
    }

    /// <summary><c>key = value</c> with the value as the rule above says, checked to parse.</summary>
    private static string Line(string key, string value, string source)
    {
        var text = value.Trim();
        var hocon = text.Length > 0 && text[0] is '[' or '{' or '"' ? text : ConfigLoader.Quote(value);
        if (ConfigLoader.UnbalancedBrackets(hocon) is { } problem) throw new UsageException($"{source}: invalid HOCON value: {problem}");
        try
        {
            var line = $"{key} = {hocon}";
            ConfigurationFactory.ParseString(line);
            return line;
        }
        catch (Exception e)
        {
            throw new UsageException($"{source}: invalid HOCON value: {e.Message.Split('\n')[0].Trim()}");
        }
    }

    [GeneratedRegex("^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$")]
    private static partial Regex KeyPattern();
}
