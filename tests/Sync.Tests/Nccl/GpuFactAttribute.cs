using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Tests.Nccl;

/// <summary>A fact that runs only where NCCL and the CUDA runtime load and see a GPU; elsewhere it is skipped with the reason.</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    public GpuFactAttribute()
    {
        if (GpuEnvironment.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>The libraries and devices the GPU tests use, probed once.</summary>
internal static class GpuEnvironment
{
    private static readonly Lazy<(NcclLibrary? Nccl, CudaRuntime? Cuda, int Devices, string? SkipReason)> Probed = new(Probe);

    public static string? SkipReason => Probed.Value.SkipReason;

    public static NcclLibrary Nccl => Probed.Value.Nccl ?? throw new InvalidOperationException(SkipReason);

    public static CudaRuntime Cuda => Probed.Value.Cuda ?? throw new InvalidOperationException(SkipReason);

    public static int DeviceCount => Probed.Value.Devices;

    private static (NcclLibrary?, CudaRuntime?, int, string?) Probe()
    {
        var configured = Environment.GetEnvironmentVariable("ACTORTRAIN_NCCL_LIBRARY");
        if (!NcclLibrary.TryLoad(configured, out var nccl, out var ncclReport))
        {
            return (null, null, 0, $"no GPU test: {ncclReport}");
        }

        if (!CudaRuntime.TryLoad(Path.GetDirectoryName(nccl!.Path), out var cuda, out var cudaReport))
        {
            return (null, null, 0, $"no GPU test: {cudaReport}");
        }

        var devices = cuda!.TryGetDeviceCount(out var reason);
        return devices > 0 ? (nccl, cuda, devices, null) : (null, null, 0, $"no GPU test: {reason}");
    }
}
