using System.Runtime.InteropServices;

namespace ActorTrain.Integration.Tests.TestBed;

/// <summary>
/// A fact that needs a <see cref="NetnsTestBed"/>: it runs only as root where <c>ip netns</c>
/// works; elsewhere it is skipped with the reason.
/// </summary>
public sealed class TestBedFactAttribute : FactAttribute
{
    public TestBedFactAttribute()
    {
        if (TestBedEnvironment.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>
/// A fact whose scenario a <see cref="TestBedFactAttribute"/> test also runs, on separate hosts: it runs
/// on loopback only where no test bed can be made, so that CI does not pay for the same run twice.
/// </summary>
public sealed class LoopbackUnlessTestBedFactAttribute : FactAttribute
{
    public LoopbackUnlessTestBedFactAttribute(string testBedTest)
    {
        if (TestBedEnvironment.SkipReason is null) Skip = $"runs on the namespace test bed instead: {testBedTest}";
    }
}

/// <summary>Whether this machine can make a test bed, probed once.</summary>
internal static class TestBedEnvironment
{
    private static readonly Lazy<string?> Probed = new(Probe);

    /// <summary>Null when a bed can be made, else why not.</summary>
    public static string? SkipReason => Probed.Value;

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux()) return "no test bed: network namespaces need Linux";
        if (GetEuid() != 0) return "no test bed: it needs root (network namespaces, links, qdiscs)";
        if (!File.Exists(NetnsTestBed.ScriptPath)) return $"no test bed: {NetnsTestBed.ScriptPath} is missing";
        foreach (var tool in new[] { "ip", "tc", "bash" })
        {
            if (!OnPath(tool)) return $"no test bed: {tool} is not installed";
        }
        // Make, enter and remove a namespace of our own.
        var probe = $"atbprobe{Environment.ProcessId % 100000}";
        try
        {
            var (code, output) = NetnsTestBed.Command("ip", ["netns", "add", probe]);
            if (code != 0) return $"no test bed: `ip netns add` does not work here: {output}";
            (code, output) = NetnsTestBed.Command("ip", ["netns", "exec", probe, "ip", "link", "set", "lo", "up"]);
            if (code != 0) return $"no test bed: `ip netns exec` does not work here: {output}";
            return null;
        }
        catch (Exception e)
        {
            return $"no test bed: {e.Message}";
        }
        finally
        {
            try { NetnsTestBed.Command("ip", ["netns", "del", probe]); } catch { /* it was never made */ }
        }
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Any(dir => File.Exists(Path.Combine(dir, tool)));

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEuid();
}
