using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using ActorTrain.Sync;
using ActorTrain.Sync.Buckets;
using ActorTrain.Sync.Reduction;
using ActorTrain.TrainerActors.Checkpoints;
using ActorTrain.TrainerActors.Jobs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Training;

/// <summary>
/// One model replica and its gradient fusion buffers: forward/backward, gradients into
/// buckets, averaged buckets back into gradients, optimizer step. No actors and no network
/// here, so the data-parallel arithmetic can be tested on its own.
/// Three floats ride at the end of the last bucket and are sum-reduced with the gradients:
/// the number of replicas whose gradient was not finite, the replicas' losses, and the number of
/// replicas asked to pause (so that every replica stops after the same step).
/// </summary>
internal sealed class Replica : IDisposable
{
    private const int NonFiniteSlot = 0;
    private const int LossSlot = 1;
    private const int PauseSlot = 2;
    private const int ExtraSlots = 3;
    private static readonly object InitGate = new();
    private readonly TrainingJob _job;
    private readonly IReadOnlyList<Parameter> _parameters;
    // Whether the model registers module buffers (BatchNorm statistics): fixed once it is built, so
    // the per-step broadcast does not walk the modules of a model that has none.
    private readonly bool _hasModuleBuffers;
    // The buckets in device memory while the process group reduces on the device (NCCL); null: host buckets.
    private DeviceBuckets? _onDevice;

    public Replica(TrainingJob job, int seed, Device device, long bucketSizeBytes)
    {
        _job = job;
        Device = device;
        // Parameter init draws from torch's process-wide generator: trainers of one process
        // build their replicas one at a time so each init depends on the seed alone.
        lock (InitGate)
        {
            torch.manual_seed(seed);
            Model = job.CreateModel();
        }
        Model.to(device);
        Model.train();
        Optimizer = job.CreateOptimizer(Model);
        var named = Model.named_parameters().ToList();
        RequireFloat32(job, named);
        _parameters = named.Select(p => p.parameter).ToList();
        Specs = named.Select(p => new ParameterSpec(p.name, checked((int)p.parameter.numel()))).ToList();
        Fingerprint = ComputeFingerprint(named);
        _hasModuleBuffers = Model.named_buffers().Any();
        UseBucketSize(bucketSizeBytes);
    }

    public Device Device { get; }
    public nn.Module<Tensor, Tensor> Model { get; }
    public optim.Optimizer Optimizer { get; }
    public IReadOnlyList<ParameterSpec> Specs { get; }
    public BucketLayout Layout { get; private set; } = null!;
    public float[][] Buffers { get; private set; } = null!;

    /// <summary>
    /// Lays the gradients out in buckets of at most <paramref name="bucketSizeBytes"/>. Every
    /// replica of a world must use the same layout, so nodes take the size from the world's plan.
    /// </summary>
    public void UseBucketSize(long bucketSizeBytes)
    {
        if (Layout is not null && Layout.BucketCapacityBytes == bucketSizeBytes) return;
        Layout = BucketLayout.Create(Specs, bucketSizeBytes, extraElements: ExtraSlots);
        Buffers = Layout.Buckets.Select(b => new float[b.Length]).ToArray();
        if (_onDevice is not null) PlaceBuckets(onDevice: true);
    }

    /// <summary>
    /// Whether the gradient buckets live in device memory (<see cref="DeviceBuckets"/>), for a process group that
    /// reduces on the device, or in the host arrays <see cref="Buffers"/>. The host arrays keep the counters either way.
    /// </summary>
    internal void PlaceBuckets(bool onDevice)
    {
        if (onDevice && _onDevice?.Layout == Layout) return;
        _onDevice?.Dispose();
        _onDevice = onDevice ? new DeviceBuckets(Layout, Device) : null;
    }

    /// <summary>Whether the gradients are reduced in device buckets (see <see cref="PlaceBuckets"/>).</summary>
    internal bool BucketsOnDevice => _onDevice is not null;

    /// <summary>All-reduces bucket <paramref name="bucket"/> through <paramref name="group"/>, where the buckets live.</summary>
    internal SyncTimings ReduceBucket(ProcessGroup group, int bucket, CollectiveKey key, CancellationToken cancellationToken) =>
        _onDevice is { } device
            ? device.Reduce(group, bucket, Extra, key, cancellationToken)
            : group.AllReduce(Buffers[bucket], key, cancellationToken);

    /// <summary>The model's parameters in model order (the order of <see cref="Specs"/>).</summary>
    internal IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Hash of parameter names, shapes and dtypes; equal for equal model definitions.</summary>
    public string Fingerprint { get; }

    private Span<float> GradientPart(int bucket) =>
        bucket == Layout.ExtraOffset.Bucket ? Buffers[bucket].AsSpan(0, Layout.ExtraOffset.Offset) : Buffers[bucket];

    private Span<float> Extra => Buffers[Layout.ExtraOffset.Bucket].AsSpan(Layout.ExtraOffset.Offset, ExtraSlots);

    /// <summary>
    /// Forward and backward on one mini-batch; returns its (unscaled) loss. Leaves gradients in the parameters.
    /// With gradient accumulation a step is <paramref name="microBatches"/> calls, <paramref name="microBatch"/>
    /// = 0..k−1: the first clears the gradients, the others add to them (DDP's no_sync), and every loss
    /// is scaled by 1/k before backward, so that for a mean loss the k calls leave the gradient of one
    /// batch of k × batch-size samples (up to float rounding).
    /// </summary>
    public float ForwardBackward(ReadOnlySpan<int> indices, IBatchSource data, int microBatch = 0, int microBatches = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(microBatches);
        if (microBatch < 0 || microBatch >= microBatches)
            throw new ArgumentOutOfRangeException(nameof(microBatch), microBatch, $"must be in 0..{microBatches - 1}");
        using var scope = torch.NewDisposeScope();
        if (microBatch == 0) Optimizer.zero_grad();
        var (input, target) = data.GetBatch(indices, Device);
        var output = Model.call(input);
        var loss = _job.ComputeLoss(output, target);
        if (microBatches == 1) loss.backward();
        else loss.div(microBatches).backward();
        return loss.item<float>();
    }

    /// <summary>
    /// One step on the first <paramref name="batchSize"/> samples that leaves no trace, so that the run's first step does
    /// not pay for libtorch's and the runtime's first calls. On a CPU device: forward and backward in train mode, as the
    /// steps run (dropout draws from torch's CPU generator, whose state is put back), the bucket copies, a step of a
    /// second optimizer of the job's type (discarded after: the job's optimizer has not stepped), and the checkpoint's
    /// model section; then the parameters and module buffers are put back bitwise (<see cref="ModelState"/>). On other
    /// devices, and for a model whose bytes do not fit one array, only forward and backward in eval mode and the bucket
    /// copies: the devices' random generators are not saved here, and a copy of the parameters and a second optimizer's
    /// state would take device memory the run may need.
    /// Either way the gradients are removed and the buckets cleared.
    /// </summary>
    public void WarmUp(IBatchSource data, int batchSize)
    {
        var count = Math.Min(batchSize, data.Count);
        if (count == 0) return;
        using var scope = torch.NewDisposeScope();
        var rng = torch.random.get_rng_state();
        var saved = Device.type == DeviceType.CPU ? TrySaveModel() : null;
        var wholeStep = saved is not null;
        if (!wholeStep) Model.eval();
        optim.Optimizer? scratch = null;
        try
        {
            var loss = ForwardBackward(Enumerable.Range(0, count).ToArray(), data);
            GradientsToBuckets(loss);
            BucketsToGradients(worldSize: 1);
            if (wholeStep)
            {
                scratch = _job.CreateOptimizer(Model);
                scratch.step();
                SaveOptimizerState();
            }
        }
        finally
        {
            scratch?.Dispose();
            if (saved is not null) ModelState.Load(Model, saved);
            Model.zero_grad(set_to_none: true);
            Model.train();
            torch.random.set_rng_state(rng);
            foreach (var buffer in Buffers) Array.Clear(buffer);
        }
    }

    /// <summary>The model's bytes for the warm-up to put back; null where they do not fit one array (models past 2 GB).</summary>
    private byte[]? TrySaveModel()
    {
        try
        {
            return ModelState.Save(Model);
        }
        catch (Exception e) when (e is IOException or OutOfMemoryException or OverflowException)
        {
            return null;
        }
    }

    /// <summary>
    /// Copies the gradients into the buckets. A replica whose gradient holds a non-finite value
    /// contributes zeros and a 1 in the non-finite slot instead, so it never enters the average
    /// and every replica sees after the reduction that the step must be skipped.
    /// Returns the number of non-finite values found.
    /// </summary>
    public int GradientsToBuckets(float loss)
    {
        var nonFinite = 0;
        for (var b = 0; b < Buffers.Length; b++) nonFinite += FillBucket(b);
        if (nonFinite > 0 || !float.IsFinite(loss))
        {
            foreach (var buffer in Buffers) Array.Clear(buffer);
            for (var b = 0; b < Buffers.Length; b++) _onDevice?.ClearGradients(b);
        }
        return SetCounters(nonFinite, loss);
    }

    /// <summary>Copies the gradients of bucket <paramref name="bucket"/> into its buffer; returns how many are not finite.</summary>
    internal int FillBucket(int bucket)
    {
        if (_onDevice is { } device) return device.Fill(bucket, _parameters);
        foreach (var e in Layout.Buckets[bucket].Entries)
            CopyOut(_parameters[e.ParameterIndex].grad, Buffers[bucket].AsSpan(e.Offset, e.Count));
        return Kernels.CountNonFinite(GradientPart(bucket));
    }

    /// <summary>
    /// Writes this replica's counters into the last bucket: withheld (1 and no loss) when any gradient value
    /// or the loss is not finite. Returns the non-finite count to report (at least 1 when withheld).
    /// </summary>
    internal int SetCounters(int nonFinite, float loss)
    {
        if (nonFinite > 0 || !float.IsFinite(loss))
        {
            Extra[NonFiniteSlot] = 1;
            Extra[LossSlot] = 0;
            return Math.Max(nonFinite, 1);
        }
        Extra[NonFiniteSlot] = 0;
        Extra[LossSlot] = loss;
        return 0;
    }

    /// <summary>Clears the gradients (not the counters) of the bucket that carries the counters.</summary>
    internal void ClearLastBucketGradients()
    {
        GradientPart(Layout.ExtraOffset.Bucket).Clear();
        _onDevice?.ClearGradients(Layout.ExtraOffset.Bucket);
    }

    /// <summary>Before the reduction (after <see cref="GradientsToBuckets"/>): this replica's vote to pause after the step.</summary>
    public void VoteToPause(bool pause) => Extra[PauseSlot] = pause ? 1 : 0;

    /// <summary>After the sum-reduction: whether any replica voted to pause after this step.</summary>
    public bool PauseVoted => Extra[PauseSlot] > 0.5f;

    /// <summary>After the sum-reduction: number of replicas that reported a non-finite gradient.</summary>
    public int ReducedNonFiniteReplicas => (int)MathF.Round(Extra[NonFiniteSlot]);

    /// <summary>After the sum-reduction: mean loss over the replicas that contributed.</summary>
    public float ReducedMeanLoss(int worldSize)
    {
        var contributors = worldSize - ReducedNonFiniteReplicas;
        return contributors > 0 ? Extra[LossSlot] / contributors : float.NaN;
    }

    /// <summary>
    /// Divides the summed buckets by the world size and writes them into the gradients.
    /// Returns false, touching nothing, when any replica's contribution was not finite, or when the
    /// sum itself is not (it overflowed, e.g. past fp16's ±65504 on a compressed wire). Every replica
    /// holds the same reduced bytes, so all decide alike.
    /// </summary>
    public bool BucketsToGradients(int worldSize)
    {
        if (ReducedNonFiniteReplicas > 0) return false;
        if (_onDevice is { } device) return device.ToGradients(_parameters, worldSize);
        for (var b = 0; b < Buffers.Length; b++)
            if (Kernels.CountNonFinite(GradientPart(b)) > 0) return false;
        var scale = 1f / worldSize;
        for (var b = 0; b < Buffers.Length; b++)
        {
            // Only the gradients are averaged; the counters after them stay sums.
            Kernels.Scale(GradientPart(b), scale);
            foreach (var e in Layout.Buckets[b].Entries)
                CopyIn(Buffers[b].AsSpan(e.Offset, e.Count), _parameters[e.ParameterIndex].grad);
        }
        return true;
    }

    /// <summary>
    /// Makes every replica equal to rank <paramref name="sourceRank"/>'s: its parameters, bucket by bucket,
    /// then (when <paramref name="optimizerStateBytes"/> &gt; 0) its serialized optimizer state, as bytes.
    /// Broadcasts copy the source's bits; <paramref name="step"/> (the step the world resumes at) keys them.
    /// </summary>
    public void BroadcastState(ProcessGroup group, int sourceRank, int optimizerStateBytes, long step, CancellationToken cancellationToken)
    {
        var isSource = group.Rank == sourceRank;
        if (isSource) ParametersToBuckets();
        for (var b = 0; b < Buffers.Length; b++)
            group.Broadcast(Buffers[b], sourceRank, new CollectiveKey(step, b), cancellationToken);
        BucketsToParameters();
        if (optimizerStateBytes <= 0) return;
        var state = new byte[optimizerStateBytes];
        if (isSource)
        {
            var bytes = SaveOptimizerState();
            if (bytes.Length != optimizerStateBytes)
                throw new InvalidOperationException($"the optimizer state is {bytes.Length} bytes, but the world was told {optimizerStateBytes}");
            bytes.CopyTo(state, 0);
        }
        group.Broadcast(state.AsMemory(), sourceRank, new CollectiveKey(step, Buffers.Length), cancellationToken);
        if (!isSource) LoadOptimizerState(state);
    }

    /// <summary>
    /// Makes every replica's module buffers equal rank 0's, bit for bit and whatever their dtype (DDP's
    /// broadcast_buffers): their bytes travel as one <see cref="ProcessGroup.Broadcast(Memory{byte}, int, CollectiveKey, CancellationToken)"/>
    /// keyed by <paramref name="step"/>. Nothing happens for a model without buffers.
    /// </summary>
    public void BroadcastModuleBuffers(ProcessGroup group, long step, CancellationToken cancellationToken)
    {
        if (!_hasModuleBuffers) return;
        using var scope = torch.NewDisposeScope();
        var buffers = Model.named_buffers().Select(b => b.buffer).ToList();
        var sizes = buffers.Select(b => checked((int)(b.numel() * b.element_size()))).ToArray();
        var bytes = new byte[sizes.Sum()];
        var isSource = group.Rank == 0;
        var offset = 0;
        if (isSource)
        {
            foreach (var b in buffers)
            {
                var host = b.detach().cpu().contiguous();
                host.bytes.CopyTo(bytes.AsSpan(offset));
                offset += host.bytes.Length;
            }
        }
        // After the parameters' buckets and the optimizer state: a key of its own within the step.
        group.Broadcast(bytes.AsMemory(), 0, new CollectiveKey(step, Buffers.Length + 1), cancellationToken);
        if (isSource) return;
        using var noGrad = torch.no_grad();
        offset = 0;
        for (var i = 0; i < buffers.Count; i++)
        {
            var staged = torch.empty(buffers[i].shape, buffers[i].dtype);
            bytes.AsSpan(offset, sizes[i]).CopyTo(staged.bytes);
            buffers[i].copy_(staged);
            offset += sizes[i];
        }
    }

    /// <summary>The optimizer's state (momentum buffers and the like) as bytes; empty for an optimizer TorchSharp cannot save.</summary>
    public byte[] SaveOptimizerState()
    {
        try
        {
            return OptimizerStateBytes.Save(Optimizer);
        }
        catch (NotSupportedException)
        {
            return [];
        }
    }

    /// <summary>Restores what <see cref="SaveOptimizerState"/> wrote (nothing for an empty state).</summary>
    public void LoadOptimizerState(byte[] state)
    {
        if (state.Length > 0) OptimizerStateBytes.Load(Optimizer, state);
    }

    public void OptimizerStep()
    {
        using var scope = torch.NewDisposeScope();
        Optimizer.step();
    }

    /// <summary>Puts the parameters in the buckets (the counters' slots hold zeros).</summary>
    public void ParametersToBuckets()
    {
        foreach (var buffer in Buffers) Array.Clear(buffer);
        for (var b = 0; b < Buffers.Length; b++)
            foreach (var e in Layout.Buckets[b].Entries)
                CopyOut(_parameters[e.ParameterIndex], Buffers[b].AsSpan(e.Offset, e.Count));
    }

    /// <summary>Overwrites the parameters with the buckets' contents.</summary>
    public void BucketsToParameters()
    {
        using var noGrad = torch.no_grad();
        for (var b = 0; b < Buffers.Length; b++)
            foreach (var e in Layout.Buckets[b].Entries)
                CopyIn(Buffers[b].AsSpan(e.Offset, e.Count), _parameters[e.ParameterIndex]);
    }

    /// <summary>
    /// SHA-256 of every parameter's bytes in model order, then of every module buffer's (BatchNorm's
    /// running statistics and the like): equal only for bitwise-equal replicas.
    /// </summary>
    public string Checksum()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        AppendParameters(sha);
        AppendModuleBuffers(sha);
        return Convert.ToHexString(sha.GetHashAndReset())[..16].ToLowerInvariant();
    }

    /// <summary>SHA-256 of the module buffers alone (empty model: the hash of nothing).</summary>
    public string ModuleBufferChecksum()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        AppendModuleBuffers(sha);
        return Convert.ToHexString(sha.GetHashAndReset())[..16].ToLowerInvariant();
    }

    private void AppendModuleBuffers(IncrementalHash sha)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var (_, buffer) in Model.named_buffers())
            sha.AppendData(buffer.detach().cpu().contiguous().bytes);
    }

    private void AppendParameters(IncrementalHash sha)
    {
        foreach (var p in _parameters)
        {
            if (IsPlainCpuFloat(p))
            {
                // Hashed in place: no copy of the parameters on the managed heap.
                sha.AppendData(p.bytes);
                continue;
            }
            var values = new float[p.numel()];
            CopyOut(p, values);
            sha.AppendData(MemoryMarshal.AsBytes(values.AsSpan()));
        }
    }

    private static void CopyOut(Tensor? source, Span<float> destination)
    {
        if (source is null)
        {
            // A parameter the loss did not reach has no gradient: it contributes zeros.
            destination.Clear();
            return;
        }
        if (IsPlainCpuFloat(source))
        {
            // Straight from the tensor's memory: the accessor copies element by element, about
            // 60x slower for the example's 431k parameters (2.9 ms against 0.05 ms).
            MemoryMarshal.Cast<byte, float>(source.bytes).CopyTo(destination);
            return;
        }
        using var scope = torch.NewDisposeScope();
        var cpu = source.device_type == DeviceType.CPU ? source.contiguous() : source.detach().cpu().contiguous();
        using var accessor = cpu.data<float>();
        accessor.CopyTo(destination, 0, 0);
    }

    private static void CopyIn(ReadOnlySpan<float> source, Tensor? destination)
    {
        if (destination is null) return;
        if (IsPlainCpuFloat(destination))
        {
            source.CopyTo(MemoryMarshal.Cast<byte, float>(destination.bytes));
            return;
        }
        using var scope = torch.NewDisposeScope();
        if (destination.device_type == DeviceType.CPU && destination.is_contiguous())
        {
            using var accessor = destination.data<float>();
            accessor.CopyFrom(source, 0, 0);
            return;
        }
        using var staged = torch.tensor(source.ToArray(), destination.shape);
        destination.copy_(staged);
    }

    private static bool IsPlainCpuFloat(Tensor t) =>
        t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.is_contiguous();

    /// <summary>
    /// The buckets, the wire and the collectives carry float32: a parameter of another dtype is refused
    /// here, when the replica is built, rather than silently reduced through a lossy or garbled copy.
    /// </summary>
    private static void RequireFloat32(TrainingJob job, IEnumerable<(string name, Parameter parameter)> named)
    {
        foreach (var (name, p) in named)
        {
            if (p.dtype != ScalarType.Float32)
                throw new NotSupportedException(
                    $"parameter \"{name}\" of job {job.Name} is {p.dtype}; ActorTrain reduces float32 parameters only " +
                    "(build the model in float32, e.g. model.to(torch.float32), and cast inside forward where another precision is wanted)");
        }
    }

    private static string ComputeFingerprint(IEnumerable<(string name, Parameter parameter)> named)
    {
        var text = new StringBuilder();
        foreach (var (name, p) in named)
            text.Append(name).Append(':').Append(string.Join('x', p.shape)).Append(':').Append(p.dtype).Append(';');
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16].ToLowerInvariant();
    }

    public void Dispose()
    {
        _onDevice?.Dispose();
        Optimizer.Dispose();
        Model.Dispose();
    }
}
