using System.Text.Json;
using System.Text.Json.Serialization;

namespace ActorTrain.TrainerActors.Reporting;

/// <summary>
/// Carries <see cref="ProgressEvent"/>s from a child process to the parent that renders them,
/// one line each on the child's standard output: <see cref="Prefix"/> followed by the event as JSON.
/// Every other line of the child's output is left as it is.
/// </summary>
internal static class ProgressProtocol
{
    public const string Prefix = "##actortrain-progress ";

    /// <summary>The event as one protocol line (no line break; NaN and infinities as JSON strings).</summary>
    public static string Encode(ProgressEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return Prefix + JsonSerializer.Serialize(e, ProgressJsonContext.Default.ProgressEvent);
    }

    /// <summary>
    /// Reads a protocol line. False, without throwing, for a line without the prefix and for a
    /// payload that is not a well-formed event.
    /// </summary>
    public static bool TryDecode(string? line, out ProgressEvent? e)
    {
        e = null;
        if (line is null || !line.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        try
        {
            e = JsonSerializer.Deserialize(line.AsSpan(Prefix.Length), ProgressJsonContext.Default.ProgressEvent);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            e = null;
            return false;
        }

        if (e is null || string.IsNullOrEmpty(e.Kind))
        {
            e = null;
            return false;
        }

        return true;
    }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ProgressEvent))]
internal sealed partial class ProgressJsonContext : JsonSerializerContext;
