using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace ActorTrain.Integration.Tests.TestBed;

/// <summary>
/// Hosts on one machine, each a network namespace with its own address, joined by a bridge:
/// made and removed by <c>tools/testbed.sh</c>, with a prefix and a /24 of 10.213.X.0 of its
/// own per instance. Host i (1-based) has address <see cref="Ip"/>(i). <see cref="Dispose"/>
/// kills the nodes it started and removes the namespaces, links, bridge, qdiscs and any sysctl
/// change, also when a test fails; process exit is a backstop, and the next
/// <see cref="Create"/> removes what a killed run left.
/// </summary>
internal sealed partial class NetnsTestBed : IDisposable
{
    /// <summary>Every fixture's prefix starts so; the script's own default ("atb") does not clash.</summary>
    private const string FamilyPrefix = "atbt";
    private static readonly ConcurrentDictionary<NetnsTestBed, byte> Live = new();
    private readonly List<NodeProcess> _nodes = [];
    private int _disposed;

    static NetnsTestBed()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var bed in Live.Keys)
            {
                try { bed.Dispose(); } catch { /* exiting anyway */ }
            }
        };
    }

    private NetnsTestBed(string prefix, string subnet, int hosts)
    {
        Prefix = prefix;
        Subnet = subnet;
        Hosts = hosts;
    }

    public string Prefix { get; }

    /// <summary>Three octets, e.g. 10.213.57.</summary>
    public string Subnet { get; }

    public int Hosts { get; }

    public static string ScriptPath => Path.Combine(Repo.Root, "tools", "testbed.sh");

    public string Ip(int host) => $"{Subnet}.{CheckHost(host)}";

    /// <summary>The bridge's own address in the root namespace: a process of the test itself reaches the hosts from there.</summary>
    public string BridgeIp => $"{Subnet}.254";

    public string Namespace(int host) => $"{Prefix}-h{CheckHost(host)}";

    /// <summary>The root namespace's end of the host's veth (the host's own end is eth0).</summary>
    public string RootLink(int host) => $"{Prefix}-h{CheckHost(host)}-v";

    public static NetnsTestBed Create(int hosts)
    {
        if (TestBedEnvironment.SkipReason is { } reason) throw new InvalidOperationException(reason);
        RemoveLeftovers();
        for (var attempt = 1; ; attempt++)
        {
            var bed = new NetnsTestBed(FamilyPrefix + RandomNumberGenerator.GetHexString(4, lowercase: true), FreeSubnet(), hosts);
            Live[bed] = 0;
            var (code, output) = bed.Script("up", hosts.ToString(), "--subnet", bed.Subnet);
            if (code == 0) return bed;
            try { bed.Dispose(); }
            catch (InvalidOperationException e) { output += "\n" + e.Message; }
            // Another run took the same subnet or prefix in the meantime: draw again.
            if (attempt < 5 && (output.Contains("overlaps", StringComparison.Ordinal) || output.Contains("exists already", StringComparison.Ordinal))) continue;
            throw new InvalidOperationException($"testbed.sh up {hosts} failed (exit {code}):\n{output}");
        }
    }

    /// <summary>Takes the host's link down: nothing reaches it or leaves it until <see cref="Heal"/>.</summary>
    public void Cut(int host) => Run("cut", CheckHost(host).ToString());

    public void Heal(int host) => Run("heal", CheckHost(host).ToString());

    /// <summary>Limits the host's link to <paramref name="rate"/> (tc syntax, e.g. "1gbit") each way with tbf.</summary>
    public void Shape(int host, string rate) => Run("shape", CheckHost(host).ToString(), rate);

    public void Unshape(int host) => Run("unshape", CheckHost(host).ToString());

    /// <summary>Runs a program inside the host and returns its exit code and output.</summary>
    public (int Code, string Output) Exec(int host, params string[] command) =>
        Command("ip", ["netns", "exec", Namespace(host), .. command]);

    /// <summary>Starts the example inside the host; it is killed on <see cref="Dispose"/>.</summary>
    public NodeProcess Start(int host, string name, params string[] args) => Start(host, name, new Dictionary<string, string>(), args);

    /// <summary>Starts the example inside the host with extra environment variables; it is killed on <see cref="Dispose"/>.</summary>
    public NodeProcess Start(int host, string name, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var node = NodeProcess.StartInNamespace(Namespace(host), name, environment, args);
        lock (_nodes) _nodes.Add(node);
        return node;
    }

    /// <summary>
    /// A TCP socket that belongs to the host's network stack: made on a thread of its own that
    /// has entered the namespace (a socket stays in the namespace it was made in, whichever
    /// thread uses it later).
    /// </summary>
    public Socket SocketIn(int host)
    {
        var path = $"/var/run/netns/{Namespace(host)}";
        Socket? socket = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var own = File.OpenHandle("/proc/thread-self/ns/net");
                using var target = File.OpenHandle(path);
                if (SetNs(target.DangerousGetHandle().ToInt32(), CloneNewNet) != 0)
                    throw new InvalidOperationException($"setns({path}) failed: errno {Marshal.GetLastPInvokeError()}");
                try { socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp); }
                finally { SetNs(own.DangerousGetHandle().ToInt32(), CloneNewNet); }
            }
            catch (Exception e) { error = e; }
        });
        thread.Start();
        thread.Join();
        return socket ?? throw new InvalidOperationException($"no socket in {Namespace(host)}", error);
    }

    /// <summary>Whether a TCP connection from one host to an address and port is made within the timeout.</summary>
    public async Task<bool> CanConnectAsync(int from, string address, int port, TimeSpan timeout)
    {
        using var socket = SocketIn(from);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(address), port), cts.Token);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            lock (_nodes)
            {
                foreach (var node in _nodes) node.Dispose();
            }
            var (code, output) = Script("down");
            if (code != 0) throw new InvalidOperationException($"testbed.sh down failed for {Prefix} (exit {code}):\n{output}");
        }
        finally
        {
            Live.TryRemove(this, out _);
        }
    }

    private int CheckHost(int host) =>
        host >= 1 && host <= Hosts ? host : throw new ArgumentOutOfRangeException(nameof(host), host, $"hosts are 1..{Hosts}");

    private void Run(params string[] args)
    {
        var (code, output) = Script(args);
        if (code != 0) throw new InvalidOperationException($"testbed.sh {string.Join(' ', args)} failed (exit {code}):\n{output}");
    }

    private (int Code, string Output) Script(params string[] args) => RunScript(Prefix, args);

    private static (int Code, string Output) RunScript(string prefix, params string[] args) =>
        Command("bash", [ScriptPath, .. args], new Dictionary<string, string>
        {
            ["ATB_PREFIX"] = prefix,
            ["ATB_OWNER_PID"] = Environment.ProcessId.ToString(),
        });

    internal static (int Code, string Output) Command(string file, IEnumerable<string> args, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null)
        {
            foreach (var (k, v) in env) psi.Environment[k] = v;
        }
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            return (124, $"{file} {string.Join(' ', args)} did not end within 60 s");
        }
        return (process.ExitCode, (stdout + stderr.Result).Trim());
    }

    /// <summary>
    /// Removes beds of earlier fixture runs whose test process is gone (killed before its
    /// Dispose): state directories with a dead owner, and namespaces or links of the family
    /// without a state directory. A bed of a run still alive is left alone.
    /// </summary>
    private static void RemoveLeftovers()
    {
        var stateRoot = Environment.GetEnvironmentVariable("ATB_STATE_DIR") ?? "/run/actortrain-testbed";
        var prefixes = new HashSet<string>();
        if (Directory.Exists(stateRoot))
        {
            foreach (var dir in Directory.GetDirectories(stateRoot))
            {
                var name = Path.GetFileName(dir);
                if (!FamilyName().IsMatch(name)) continue;
                var owner = File.Exists(Path.Combine(dir, "owner")) ? File.ReadAllText(Path.Combine(dir, "owner")).Trim() : "";
                if (!int.TryParse(owner, out var pid) || !Directory.Exists($"/proc/{pid}")) prefixes.Add(name);
            }
        }
        var names = Command("ip", ["netns", "list"]).Output + "\n" + Command("ip", ["-o", "link", "show"]).Output;
        foreach (Match m in FamilyObject().Matches(names))
        {
            if (!Directory.Exists(Path.Combine(stateRoot, m.Groups[1].Value))) prefixes.Add(m.Groups[1].Value);
        }
        foreach (var prefix in prefixes)
        {
            var (code, output) = RunScript(prefix, "down");
            if (code != 0) throw new InvalidOperationException($"could not remove the leftover test bed {prefix}:\n{output}");
        }
    }

    /// <summary>A third octet for 10.213.X.0/24 that no route of this machine covers.</summary>
    private static string FreeSubnet()
    {
        var routes = Command("ip", ["-4", "route", "show", "table", "all"]).Output;
        var used = UsedThirdOctet().Matches(routes).Select(m => int.Parse(m.Groups[1].Value)).ToHashSet();
        var free = Enumerable.Range(1, 250).Where(x => !used.Contains(x)).ToList();
        if (free.Count == 0) throw new InvalidOperationException("every 10.213.X.0/24 is in use");
        return $"10.213.{free[RandomNumberGenerator.GetInt32(free.Count)]}";
    }

    [GeneratedRegex(@"^atbt[0-9a-f]{4}$")]
    private static partial Regex FamilyName();

    [GeneratedRegex(@"\b(atbt[0-9a-f]{4})-(?:br|h\d+(?:-v)?)\b")]
    private static partial Regex FamilyObject();

    [GeneratedRegex(@"\b10\.213\.(\d+)\.")]
    private static partial Regex UsedThirdOctet();

    private const int CloneNewNet = 0x40000000;

    [DllImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static extern int SetNs(int fd, int nstype);
}
