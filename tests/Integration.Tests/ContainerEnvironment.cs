using System.Diagnostics;
using System.Runtime.InteropServices;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// A fact that needs a Docker daemon. When none answers, it starts one with
/// deploy/docker/start-dockerd.sh where it can (root, dockerd installed), and stops it again
/// when the test ends (<see cref="ContainerEnvironment.StopDaemonIfStartedHere"/>, and at the
/// latest when this process exits). Elsewhere the test is skipped with the reason.
/// </summary>
public sealed class DockerFactAttribute : FactAttribute
{
    public DockerFactAttribute()
    {
        if (ContainerEnvironment.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>Whether images can be built and containers run here, probed once.</summary>
internal static class ContainerEnvironment
{
    /// <summary>The image every ActorTrain image builds on (deploy/docker/make-base-image.sh); kept between runs.</summary>
    public const string BaseImage = "actortrain-base:bookworm";

    private static readonly Lazy<string?> Probed = new(Probe);
    private static readonly object DaemonLock = new();
    private static bool _daemonStartedHere;

    public static string ScriptDirectory => Path.Combine(Repo.Root, "deploy", "docker");

    /// <summary>Null when the container test can run, else why not.</summary>
    public static string? SkipReason => Probed.Value;

    public static bool IsRoot => OperatingSystem.IsLinux() && GetEuid() == 0;

    /// <summary>Stops the daemon this process started (nothing otherwise). Safe to call twice.</summary>
    public static void StopDaemonIfStartedHere()
    {
        lock (DaemonLock)
        {
            if (!_daemonStartedHere) return;
            _daemonStartedHere = false;
            Run(Path.Combine(ScriptDirectory, "start-dockerd.sh"), ["--stop"], TimeSpan.FromSeconds(60));
        }
    }

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux()) return "no Docker: the image and its test are Linux only";
        if (!OnPath("docker")) return "no Docker: the docker client is not installed";
        if (Run("docker", ["info"], TimeSpan.FromSeconds(30)).Code != 0)
        {
            if (!OnPath("dockerd"))
                return "no Docker daemon answers, and dockerd is not installed (Debian's docker.io; .ci/run: deploy/docker/start-dockerd.sh --install)";
            if (!IsRoot) return "no Docker daemon answers, and starting one needs root";
            var (code, output) = Run(Path.Combine(ScriptDirectory, "start-dockerd.sh"), [], TimeSpan.FromSeconds(120));
            if (code != 0) return $"no Docker daemon: deploy/docker/start-dockerd.sh could not start one: {output}";
            lock (DaemonLock) _daemonStartedHere = true;
            AppDomain.CurrentDomain.ProcessExit += (_, _) => StopDaemonIfStartedHere();
        }
        if (Run("docker", ["image", "inspect", BaseImage], TimeSpan.FromSeconds(30)).Code == 0) return null;
        if (!OnPath("debootstrap")) return $"no base image {BaseImage} and no debootstrap to make it (apt-get install debootstrap)";
        if (!IsRoot) return $"no base image {BaseImage}, and making it (debootstrap) needs root";
        return null;
    }

    /// <summary>Runs a command to its end, or kills it after <paramref name="timeout"/> (exit code 124).</summary>
    public static (int Code, string Output) Run(string file, IEnumerable<string> args, TimeSpan timeout, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Repo.Root,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            return (124, $"{file} {string.Join(' ', psi.ArgumentList)} did not end within {timeout.TotalSeconds:0} s: {Tail(stdout.Result + stderr.Result)}");
        }
        return (process.ExitCode, (stdout.Result + stderr.Result).Trim());
    }

    /// <summary>The last lines of a long output, for messages.</summary>
    public static string Tail(string text, int lines = 40) => string.Join('\n', text.Split('\n').TakeLast(lines));

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Any(dir => File.Exists(Path.Combine(dir, tool)));

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEuid();
}
