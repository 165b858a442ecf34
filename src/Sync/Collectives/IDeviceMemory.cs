namespace ActorTrain.Sync.Collectives;

/// <summary>
/// Copies float32 data between device memory and the host (<see cref="Nccl.CudaRuntime"/> on CUDA).
/// The copies run on the calling thread's current device.
/// </summary>
internal interface IDeviceMemory
{
    /// <summary>Copies device memory at <paramref name="source"/> into <paramref name="destination"/>.</summary>
    void CopyToHost(IntPtr source, Span<float> destination);

    /// <summary>Copies <paramref name="source"/> to device memory at <paramref name="destination"/>.</summary>
    void CopyToDevice(ReadOnlySpan<float> source, IntPtr destination);
}

/// <summary>The node's collective on device memory and the copies between the device and the host.</summary>
/// <param name="IntraNode">Reduce-scatter and all-gather among the node's trainers on device pointers (NCCL).</param>
/// <param name="Memory">Moves this trainer's shard to the host for the cross-node ring and back.</param>
internal sealed record DeviceCollectives(IDeviceIntraNodeCollective IntraNode, IDeviceMemory Memory);

/// <summary><paramref name="Count"/> float32 values in device memory at <paramref name="Pointer"/>.</summary>
internal readonly record struct DeviceBuffer(IntPtr Pointer, long Count);
