using System.Globalization;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The multi-host mode's line protocol over plain TCP, between rank 0 (which listens) and every
/// other rank. In order:
/// <list type="number">
/// <item>rank R → 0: <c>hello R CONFIG ADDRESS</c> (CONFIG: <see cref="Config"/>, ADDRESS: its data plane)</item>
/// <item>0 → each: <c>peers TOKEN ADDRESS0 ... ADDRESS(N−1)</c> once all N−1 have joined</item>
/// <item>rank R → 0: <c>result JSON</c> (a <see cref="WorkerResult"/>) after its timed iterations</item>
/// <item>0 → each: <c>done</c> once every rank has reported</item>
/// </list>
/// Either side may instead send <c>error TEXT</c>, which ends the run everywhere.
/// </summary>
internal static class Rendezvous
{
    public const string Hello = "hello";
    public const string Peers = "peers";
    public const string Result = "result";
    public const string Done = "done";
    public const string Error = "error";

    /// <summary>Longest hello line rank 0 reads (rank, configuration, one address).</summary>
    public const int MaxHelloBytes = 1024;

    /// <summary>Longest peers, done or error line a rank reads: the token and up to 64 addresses.</summary>
    public const int MaxControlBytes = 32 * 1024;

    /// <summary>Longest result line rank 0 reads: a time per iteration, 25 bytes at most each, for a few ten thousand.</summary>
    public const int MaxResultBytes = 1 << 20;

    /// <summary>How long rank 0 waits for a connection's hello before it calls the run off.</summary>
    public static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// What every rank must agree on, one word: <c>nodes=3,bytes=16777216,transport=tcp,chunk=0,iterations=20,warmup=3</c>.
    /// </summary>
    public static string Config(RunSpec spec) => string.Create(CultureInfo.InvariantCulture,
        $"nodes={spec.Nodes},bytes={spec.Bytes},transport={spec.Label},chunk={spec.ChunkBytes},iterations={spec.Iterations},warmup={spec.Warmup}");

    /// <summary>The settings in which two <see cref="Config"/> words differ, e.g. "bytes (1048576 here, 2097152 there)".</summary>
    public static string Differences(string mine, string theirs)
    {
        static Dictionary<string, string> Parse(string config) => config.Split(',')
            .Select(pair => pair.Split('=', 2))
            .GroupBy(pair => pair[0])
            .ToDictionary(group => group.Key, group => group.First() is [_, var value] ? value : "");

        var here = Parse(mine);
        var there = Parse(theirs);
        var names = here.Keys.Union(there.Keys);
        return string.Join(", ", names
            .Where(name => here.GetValueOrDefault(name) != there.GetValueOrDefault(name))
            .Select(name => $"{name} ({here.GetValueOrDefault(name) ?? "unset"} here, {there.GetValueOrDefault(name) ?? "unset"} there)"));
    }

    /// <summary>A received line as it may appear in a message: bounded, one line.</summary>
    public static string Quote(string line) => "'" + (line.Length > 80 ? line[..80] + "..." : line) + "'";
}
