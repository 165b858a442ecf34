using System.Globalization;
using System.Text.RegularExpressions;

namespace ActorTrain.Cluster.Tests.Metrics;

/// <summary>One sample line of Prometheus' text format: name, labels and value.</summary>
internal sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public bool Has(params (string Label, string Value)[] labels) =>
        labels.All(l => Labels.TryGetValue(l.Label, out var v) && v == l.Value);
}

/// <summary>Parses a scrape, so specs assert on series rather than on label order or formatting.</summary>
internal static partial class Exposition
{
    [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)$""")]
    private static partial Regex SampleLine();

    [GeneratedRegex("""(?<label>[a-zA-Z_][a-zA-Z0-9_]*)="(?<value>(?:[^"\\]|\\.)*)",?""")]
    private static partial Regex LabelPair();

    public static IReadOnlyList<Sample> Parse(string text)
    {
        var samples = new List<Sample>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var m = SampleLine().Match(line);
            Assert.True(m.Success, $"not a sample line: \"{line}\"");
            var labels = LabelPair().Matches(m.Groups["labels"].Value)
                .ToDictionary(p => p.Groups["label"].Value, p => p.Groups["value"].Value);
            samples.Add(new Sample(m.Groups["name"].Value, labels, ParseValue(m.Groups["value"].Value)));
        }
        return samples;
    }

    /// <summary>The value of the one series named <paramref name="name"/> with these labels.</summary>
    public static double Value(this IReadOnlyList<Sample> samples, string name, params (string Label, string Value)[] labels)
    {
        var matches = samples.Where(s => s.Name == name && s.Has(labels)).ToList();
        Assert.True(matches.Count == 1,
            $"expected one series {name}{{{string.Join(",", labels.Select(l => $"{l.Label}=\"{l.Value}\""))}}}, found {matches.Count}");
        return matches[0].Value;
    }

    private static double ParseValue(string s) => s switch
    {
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        "NaN" => double.NaN,
        _ => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture),
    };
}
