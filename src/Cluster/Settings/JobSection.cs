using System.Security.Cryptography;
using System.Text;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace ActorTrain.Cluster.Settings;

/// <summary>
/// <c>actortrain.job</c>: the training job's own settings (its hyperparameters, the size of its data),
/// layered like every other key. ActorTrain reads none of them; it only makes sure every node of a
/// run has the same (<see cref="Digest"/>).
/// </summary>
internal static class JobSection
{
    public const string Path = "actortrain.job";

    /// <summary>Every key under <see cref="Path"/> with its value as HOCON gives it, sorted by key; arrays as <c>[a,b]</c>.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Entries(Config config)
    {
        var entries = new List<KeyValuePair<string, string>>();
        if (config.HasPath(Path) && config.GetValue(Path) is { } root && root.IsObject()) Flatten(root.GetObject(), "", entries);
        entries.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return entries;
    }

    /// <summary>A short digest of <see cref="Entries"/>: equal on two nodes exactly when their job settings are; empty when there are none.</summary>
    public static string Digest(Config config)
    {
        var entries = Entries(config);
        if (entries.Count == 0) return "";
        var text = string.Join("\n", entries.Select(e => $"{e.Key}={e.Value}"));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..16];
    }

    private static void Flatten(HoconObject node, string prefix, List<KeyValuePair<string, string>> into)
    {
        foreach (var (key, value) in node.Items)
        {
            var name = prefix + key;
            if (value.IsObject()) Flatten(value.GetObject(), name + ".", into);
            else if (value.IsArray()) into.Add(new(name, "[" + string.Join(",", value.GetArray().Select(v => v.GetString())) + "]"));
            else into.Add(new(name, value.GetString() ?? ""));
        }
    }
}
