using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// A real node: the MNIST example's program in its own OS process, talking Akka remoting over
/// 127.0.0.1, or over a test bed's bridge when started inside one of its network namespaces.
/// Output is captured; the process is killed on Dispose whatever happened.
/// </summary>
internal sealed class NodeProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();

    private NodeProcess(string name, string dll, IEnumerable<string> args, string? netns = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        Name = name;
        // `ip netns exec` enters the namespace and execs the program: the PID is dotnet's.
        var psi = new ProcessStartInfo(netns is null ? "dotnet" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Repo.Root,
        };
        if (netns is not null)
        {
            foreach (var a in new[] { "netns", "exec", netns, "dotnet" }) psi.ArgumentList.Add(a);
        }
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["ACTORTRAIN_MNIST_DATA"] = Repo.MnistData;
        // The node ends itself if this test process dies and its stdin closes.
        psi.Environment["ACTORTRAIN_EXIT_WITH_PARENT"] = "1";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) psi.Environment[key] = value;
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _lines.Enqueue(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _lines.Enqueue("ERR " + e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }
    public string Output => string.Join('\n', _lines);
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;
    public int Pid => _process.Id;

    public static NodeProcess Start(string name, params string[] args) => new(name, Repo.ExampleDll, args);

    /// <summary>The example with extra environment variables (settings such as ACTORTRAIN__…).</summary>
    public static NodeProcess StartWithEnvironment(string name, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        new(name, Repo.ExampleDll, args, environment: environment);

    /// <summary>The example inside the network namespace <paramref name="netns"/> (see TestBed/NetnsTestBed).</summary>
    public static NodeProcess StartInNamespace(string netns, string name, params string[] args) => new(name, Repo.ExampleDll, args, netns);

    public static NodeProcess StartInNamespace(string netns, string name, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        new(name, Repo.ExampleDll, args, netns, environment);

    /// <summary>Sends a POSIX signal (TERM, STOP, CONT, KILL) to the node's process.</summary>
    public void Signal(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
    }

    /// <summary>Another program than the MNIST example (another job's example), with extra environment variables.</summary>
    public static NodeProcess StartProgram(string name, string dll, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        new(name, dll, args, environment: environment);

    /// <summary>The all-reduce benchmark (bench/AllReduce) instead of the example.</summary>
    public static NodeProcess StartBench(string name, params string[] args) => new(name, Repo.BenchDll, args);

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:0} s. Its output:\n{Tail()}");
        }
        _process.WaitForExit(); // flushes the asynchronous output readers
        return _process.ExitCode;
    }

    public async Task WaitForLineAsync(string fragment, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_lines.Any(l => l.Contains(fragment, StringComparison.Ordinal))) return;
            if (_process.HasExited) break;
            await Task.Delay(100);
        }
        throw new TimeoutException($"{Name} did not print \"{fragment}\" within {timeout.TotalSeconds:0} s. Its output:\n{Tail()}");
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { }
    }

    public string Tail(int lines = 60) => string.Join('\n', _lines.TakeLast(lines));

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try { return ((IPEndPoint)listener.LocalEndpoint).Port; }
        finally { listener.Stop(); }
    }
}

internal static class Repo
{
    public static readonly string Root = FindRoot();

    public static string MnistData => Path.Combine(Root, "examples", "Mnist", "data");

    /// <summary>The example as built beside these tests (same configuration).</summary>
    public static string ExampleDll
    {
        get
        {
            var path = Path.Combine(Root, "examples", "Mnist", "bin", Configuration, "net10.0", "ActorTrain.Mnist.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"build the example first: {path} is missing", path);
        }
    }

    /// <summary>The all-reduce benchmark as built beside these tests (same configuration).</summary>
    public static string BenchDll
    {
        get
        {
            var path = Path.Combine(Root, "bench", "AllReduce", "bin", Configuration, "net10.0", "ActorTrain.Bench.AllReduce.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"build the benchmark first: {path} is missing", path);
        }
    }

    internal static string Configuration =>
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ActorTrain.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no ActorTrain.sln above {AppContext.BaseDirectory}");
    }

    public static string TempDir() => Directory.CreateTempSubdirectory("actortrain-it-").FullName;
}
