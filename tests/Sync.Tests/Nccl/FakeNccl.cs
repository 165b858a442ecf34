using System.Diagnostics;
using System.Runtime.InteropServices;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Tests.Nccl;

/// <summary>
/// The CPU stand-in for libnccl.so.2 and libcudart.so (FakeNccl/fake_nccl.c), compiled once per
/// test run with gcc: it lets the real bindings and NcclCollective run without a GPU. It checks the
/// code's use of the C API, not NCCL itself.
/// </summary>
internal static class FakeNccl
{
    private static readonly Lazy<(string? Folder, string? SkipReason)> Built = new(Build);

    public static string? SkipReason => Built.Value.SkipReason;

    /// <summary>The folder holding the fake libnccl.so.2 and libcudart.so.</summary>
    public static string Folder => Built.Value.Folder ?? throw new InvalidOperationException(SkipReason);

    public static string NcclPath => Path.Combine(Folder, "libnccl.so.2");

    /// <summary>Only the fake's folder: nothing real is found even where NCCL is installed.</summary>
    public static ProbeLocations Locations => new(null, [], [], UseSystemLoader: false);

    public static NcclLibrary Nccl => NcclLibrary.TryLoad(NcclPath, Locations, out var nccl, out var report) ? nccl! : throw new InvalidOperationException(report);

    public static CudaRuntime Cuda => CudaRuntime.TryLoad(Folder, Locations, out var cuda, out var report) ? cuda! : throw new InvalidOperationException(report);

    /// <summary>The fake's next collective call returns <paramref name="code"/> instead of running.</summary>
    public static void FailNextCollective(int code)
    {
        var handle = NativeLibrary.Load(NcclPath);
        Marshal.GetDelegateForFunctionPointer<FailNext>(NativeLibrary.GetExport(handle, "fakeNcclFailNextCollective"))(code);
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void FailNext(int code);

    private static (string?, string?) Build()
    {
        if (!OperatingSystem.IsLinux())
        {
            return (null, "the fake NCCL is a Linux shared library");
        }

        var source = Path.Combine(AppContext.BaseDirectory, "Nccl", "FakeNccl", "fake_nccl.c");
        var folder = Directory.CreateTempSubdirectory("actortrain-fake-nccl-").FullName;
        var library = Path.Combine(folder, "libnccl.so.2");
        try
        {
            using var gcc = Process.Start(new ProcessStartInfo("gcc", ["-shared", "-fPIC", "-O1", "-pthread", "-o", library, source])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            })!;
            var errors = gcc.StandardError.ReadToEnd();
            gcc.WaitForExit();
            if (gcc.ExitCode != 0)
            {
                return (null, $"gcc could not build the fake NCCL: {errors}");
            }
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (null, $"no C compiler to build the fake NCCL (gcc: {e.Message})");
        }

        // One file serves both names: it exports the NCCL and the CUDA runtime functions.
        File.Copy(library, Path.Combine(folder, "libcudart.so"));
        return (folder, null);
    }
}

/// <summary>A fact that runs against the fake NCCL; skipped with the reason where it cannot be built.</summary>
public sealed class FakeNcclFactAttribute : FactAttribute
{
    public FakeNcclFactAttribute()
    {
        if (FakeNccl.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A theory that runs against the fake NCCL; skipped with the reason where it cannot be built.</summary>
public sealed class FakeNcclTheoryAttribute : TheoryAttribute
{
    public FakeNcclTheoryAttribute()
    {
        if (FakeNccl.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>Device memory copies through the fake CUDA runtime, counted in each direction.</summary>
internal sealed class CountingDeviceMemory(CudaRuntime cuda) : IDeviceMemory
{
    private long _deviceToHost;
    private long _hostToDevice;

    public long DeviceToHostBytes => Interlocked.Read(ref _deviceToHost);
    public long HostToDeviceBytes => Interlocked.Read(ref _hostToDevice);

    public void CopyToHost(IntPtr source, Span<float> destination)
    {
        Interlocked.Add(ref _deviceToHost, (long)destination.Length * sizeof(float));
        cuda.CopyToHost(source, destination);
    }

    public void CopyToDevice(ReadOnlySpan<float> source, IntPtr destination)
    {
        Interlocked.Add(ref _hostToDevice, (long)source.Length * sizeof(float));
        cuda.CopyToDevice(source, destination);
    }
}
