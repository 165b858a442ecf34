using System.Diagnostics;
using System.Runtime.InteropServices;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// A fact that needs a Docker daemon. When none answers, the test starts one with
/// deploy/docker/start-dockerd.sh where it can (root, dockerd installed;
/// <see cref="ContainerEnvironment.StartDaemonIfNeeded"/>), and stops it again when it ends
/// (<see cref="ContainerEnvironment.StopDaemonIfStartedHere"/>, and at the latest when this
/// process exits). The attribute itself starts nothing: it is made for every test a run
/// discovers, also when a filter leaves this one out. Elsewhere the test is skipped with the reason.
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

    /// <summary>
    /// Starts a daemon when none answers (the probe found that this process may start one), and makes sure
    /// the base image can be had. Throws naming what failed.
    /// </summary>
    public static void StartDaemonIfNeeded()
    {
        if (Run("docker", ["info"], TimeSpan.FromSeconds(30)).Code == 0) return;
        lock (DaemonLock)
        {
            var (code, output) = Run(Path.Combine(ScriptDirectory, "start-dockerd.sh"), [], TimeSpan.FromSeconds(120));
            if (code != 0) throw new InvalidOperationException($"deploy/docker/start-dockerd.sh could not start a Docker daemon: {output}");
            if (!_daemonStartedHere) AppDomain.CurrentDomain.ProcessExit += (_, _) => StopDaemonIfStartedHere();
            _daemonStartedHere = true;
        }
    }

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
            // The test starts the daemon (StartDaemonIfNeeded); whether it has the base image is known only then,
            // so making it must be possible.
            return OnPath("debootstrap") ? null
                : $"no Docker daemon answers (the test would start one), and no debootstrap to make {BaseImage} should it be missing (apt-get install debootstrap)";
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
