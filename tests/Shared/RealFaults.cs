using System.Diagnostics;

namespace ActorTrain.Tests.Shared;

/// <summary>
/// Faults made for real rather than simulated, which needs root on Linux (CI runs as root): a small
/// tmpfs is a disk that fills, a read-only tmpfs a file system that refuses writes, and an immutable
/// directory (<c>chattr +i</c>) one that even root cannot write into.
/// </summary>
internal static class RealFaults
{
    public static bool IsRoot => OperatingSystem.IsLinux() && Environment.IsPrivilegedProcess;

    /// <summary>Runs a command and fails naming it, its exit code and its error output.</summary>
    public static void Run(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {file}");
        var error = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(30_000))
        {
            process.Kill();
            throw new TimeoutException($"{file} {string.Join(' ', arguments)} did not finish in 30 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed with exit code {process.ExitCode}: {error.Result.Trim()}");
        }
    }

    /// <summary>Whether <c>chattr +i</c> works where the tests make their temporary folders (root, and a file system that has the attribute).</summary>
    public static bool CanMakeImmutable { get; } = ProbeImmutable();

    private static bool ProbeImmutable()
    {
        if (!IsRoot)
        {
            return false;
        }

        var probe = Directory.CreateTempSubdirectory("actortrain-chattr-").FullName;
        try
        {
            Run("chattr", "+i", probe);
            Run("chattr", "-i", probe);
            return true;
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or TimeoutException)
        {
            return false;
        }
        finally
        {
            Directory.Delete(probe);
        }
    }
}

/// <summary>A test that makes a real fault as root; skipped, with the reason, otherwise.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!RealFaults.IsRoot)
        {
            Skip = "makes the fault for real (a tmpfs mount), which needs root on Linux; CI runs as root";
        }
    }
}

/// <summary>
/// A tmpfs of <c>bytes</c> bytes mounted on a fresh temporary folder: writing more fails with ENOSPC, as on a
/// full disk; mounted read-only, every write fails. Dispose unmounts it and removes the folder.
/// </summary>
internal sealed class SmallTmpfs : IDisposable
{
    public SmallTmpfs(long bytes, bool readOnly = false)
    {
        Path = Directory.CreateTempSubdirectory("actortrain-tmpfs-").FullName;
        try
        {
            RealFaults.Run("mount", "-t", "tmpfs", "-o", $"size={bytes},mode=0755{(readOnly ? ",ro" : "")}", "tmpfs", Path);
        }
        catch
        {
            Directory.Delete(Path);
            throw;
        }
    }

    public string Path { get; }

    public void Dispose()
    {
        RealFaults.Run("umount", Path);
        Directory.Delete(Path);
    }
}

/// <summary>Makes a folder immutable (<c>chattr +i</c>): nothing, not even root, can create a file in it. Dispose lifts it.</summary>
internal sealed class ImmutableDirectory : IDisposable
{
    private readonly string path;

    public ImmutableDirectory(string path)
    {
        this.path = path;
        RealFaults.Run("chattr", "+i", path);
    }

    public void Dispose() => RealFaults.Run("chattr", "-i", path);
}
