using ActorTrain.Sync;
using ActorTrain.Sync.Buckets;
using ActorTrain.Sync.Collectives;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Training;

/// <summary>
/// A replica's gradient buckets in device memory, for a process group that reduces on the device
/// (<see cref="ProcessGroup.Device"/>: NCCL inside the node). One flat float32 tensor per bucket lives
/// on the replica's device; gradients are flattened into it there, the node's reduce-scatter and
/// all-gather run on it, and only this trainer's shard of the node's sum goes to the host for the
/// cross-node ring. The averaged values are written back into the gradients on the device. Of the
/// rest, only the step's three counters cross to the host (with the bucket that carries them).
/// </summary>
internal sealed class DeviceBuckets : IDisposable
{
    private readonly Tensor[] _flat;
    private readonly Device _device;

    public DeviceBuckets(BucketLayout layout, Device device)
    {
        Layout = layout;
        _device = device;
        _flat = layout.Buckets.Select(b => torch.zeros(b.Length, ScalarType.Float32, device).DetachFromDisposeScope()).ToArray();
    }

    /// <summary>The layout the tensors were made for.</summary>
    public BucketLayout Layout { get; }

    /// <summary>Flattens the gradients of <paramref name="bucket"/> into its tensor (zeros where there is none); returns how many are not finite.</summary>
    public int Fill(int bucket, IReadOnlyList<Parameter> parameters)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var flat = _flat[bucket];
        foreach (var e in Layout.Buckets[bucket].Entries)
        {
            var part = flat.narrow(0, e.Offset, e.Count);
            if (parameters[e.ParameterIndex].grad is { } grad) part.copy_(grad.reshape(-1));
            else part.zero_();
        }
        return CountNonFinite(bucket);
    }

    /// <summary>Zeroes the gradients of <paramref name="bucket"/> (not the counters).</summary>
    public void ClearGradients(int bucket)
    {
        using var scope = torch.NewDisposeScope();
        Gradients(bucket).zero_();
    }

    /// <summary>
    /// All-reduces <paramref name="bucket"/> on the device through <paramref name="group"/>; for the bucket that carries
    /// them, <paramref name="counters"/> (host memory) go with it and come back summed.
    /// </summary>
    public SyncTimings Reduce(ProcessGroup group, int bucket, Span<float> counters, CollectiveKey key, CancellationToken cancellationToken)
    {
        var flat = _flat[bucket];
        var carries = bucket == Layout.ExtraOffset.Bucket;
        if (carries) WriteCounters(counters);
        // NCCL runs on its own stream: what torch queued on this device must be done before it reads the bucket.
        if (_device.type == DeviceType.CUDA) torch.cuda.synchronize(_device);
        var timings = group.AllReduce(new DeviceBuffer(PointerOf(flat), flat.numel()), key, cancellationToken);
        if (carries) ReadCounters(counters);
        return timings;
    }

    /// <summary>
    /// Divides the summed buckets by <paramref name="worldSize"/> and writes them into the gradients. Returns false,
    /// touching nothing, when a sum is not finite (every replica holds the same sums, so all decide alike).
    /// </summary>
    public bool ToGradients(IReadOnlyList<Parameter> parameters, int worldSize)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        for (var b = 0; b < _flat.Length; b++)
            if (CountNonFinite(b) > 0) return false;
        var scale = 1f / worldSize;
        for (var b = 0; b < _flat.Length; b++)
        {
            Gradients(b).mul_(scale);
            foreach (var e in Layout.Buckets[b].Entries)
                if (parameters[e.ParameterIndex].grad is { } grad) grad.copy_(_flat[b].narrow(0, e.Offset, e.Count).view(grad.shape));
        }
        return true;
    }

    private Tensor Gradients(int bucket) =>
        bucket == Layout.ExtraOffset.Bucket ? _flat[bucket].narrow(0, 0, Layout.ExtraOffset.Offset) : _flat[bucket];

    private int CountNonFinite(int bucket)
    {
        using var scope = torch.NewDisposeScope();
        return (int)Gradients(bucket).isfinite().logical_not().sum().item<long>();
    }

    private void WriteCounters(ReadOnlySpan<float> counters)
    {
        using var scope = torch.NewDisposeScope();
        _flat[Layout.ExtraOffset.Bucket].narrow(0, Layout.ExtraOffset.Offset, counters.Length).copy_(torch.tensor(counters.ToArray()));
    }

    private void ReadCounters(Span<float> counters)
    {
        using var scope = torch.NewDisposeScope();
        var host = _flat[Layout.ExtraOffset.Bucket].narrow(0, Layout.ExtraOffset.Offset, counters.Length).cpu().contiguous();
        using var values = host.data<float>();
        var summed = new float[counters.Length];
        values.CopyTo(summed, 0, 0);
        summed.CopyTo(counters);
    }

    private static IntPtr PointerOf(Tensor flat)
    {
        using var storage = flat.storage<float>();
        return storage.data_ptr() + checked((int)(flat.storage_offset() * sizeof(float)));
    }

    public void Dispose()
    {
        foreach (var t in _flat) t.Dispose();
    }
}
