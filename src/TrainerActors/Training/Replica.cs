using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using ActorTrain.Sync;
using ActorTrain.Sync.Buckets;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Transport;
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
public sealed class Replica : IDisposable
{
    private const int NonFiniteSlot = 0;
    private const int LossSlot = 1;
    private const int PauseSlot = 2;
    private const int ExtraSlots = 3;
    private static readonly object InitGate = new();
    private readonly TrainingJob _job;
    private readonly IReadOnlyList<Parameter> _parameters;

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
        _parameters = named.Select(p => p.parameter).ToList();
        Specs = named.Select(p => new ParameterSpec(p.name, checked((int)p.parameter.numel()))).ToList();
        Fingerprint = ComputeFingerprint(named);
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
        if (Overlap is { } overlap)
        {
            // The overlap maps parameters to buckets: a new layout needs a new one.
            overlap.Dispose();
            Overlap = new BackwardOverlap(this, Model, _parameters, _overlapThreadName!);
        }
    }

    /// <summary>Set by <see cref="EnableOverlap"/>: reduces buckets while backward runs. Null: reduction after backward.</summary>
    public BackwardOverlap? Overlap { get; private set; }

    private string? _overlapThreadName;

    /// <summary>
    /// Puts the backward signals on the model (see <see cref="BackwardOverlap"/>); its reductions run
    /// on a thread of their own named <paramref name="threadName"/>. CPU replicas only.
    /// </summary>
    public BackwardOverlap EnableOverlap(string threadName)
    {
        if (Device.type != DeviceType.CPU)
            throw new NotSupportedException($"overlapping backward with the reduction needs a CPU replica; this one is on {Device}");
        _overlapThreadName = threadName;
        return Overlap ??= new BackwardOverlap(this, Model, _parameters, threadName);
    }

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
    /// With <paramref name="signalBackward"/> (the last micro-batch of a step whose
    /// <see cref="BackwardOverlap.Pass"/> has begun), buckets start reducing while backward runs.
    public float ForwardBackward(ReadOnlySpan<int> indices, IBatchSource data, int microBatch = 0, int microBatches = 1, bool signalBackward = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(microBatches);
        if (microBatch < 0 || microBatch >= microBatches)
            throw new ArgumentOutOfRangeException(nameof(microBatch), microBatch, $"must be in 0..{microBatches - 1}");
        if (signalBackward && Overlap is null) throw new InvalidOperationException("signalBackward needs EnableOverlap first");
        using var scope = torch.NewDisposeScope();
        if (microBatch == 0) Optimizer.zero_grad();
        var (input, target) = data.GetBatch(indices, Device);
        Overlap?.Arm(signalBackward);
        try
        {
            var output = Model.call(input);
            var loss = _job.ComputeLoss(output, target);
            if (microBatches == 1) loss.backward();
            else loss.div(microBatches).backward();
            return loss.item<float>();
        }
        finally
        {
            Overlap?.Arm(false);
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
            foreach (var buffer in Buffers) Array.Clear(buffer);
        return SetCounters(nonFinite, loss);
    }

    /// <summary>Copies the gradients of bucket <paramref name="bucket"/> into its buffer; returns how many are not finite.</summary>
    internal int FillBucket(int bucket)
    {
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
    internal void ClearLastBucketGradients() => GradientPart(Layout.ExtraOffset.Bucket).Clear();

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
    /// Sum-reduces every bucket across all replicas of the world: intra-node, then the
    /// cross-node ring of this local rank, then intra-node again (see <see cref="HierarchicalAllReduce"/>).
    /// The target's compression is the world's format on the cross-node ring (the plan's); the
    /// broadcasts always reduce in float32. Blocks the calling thread, which must be this replica's own.
    /// </summary>
    public SyncTimings ReduceBuckets(ReductionTarget target, long step, CancellationToken cancellationToken)
    {
        double intra = 0, cross = 0;
        for (var b = 0; b < Buffers.Length; b++)
        {
            var t = ReduceBucket(b, target, step, cancellationToken);
            intra += t.IntraNodeMs;
            cross += t.CrossNodeMs;
        }
        return new SyncTimings(intra, cross);
    }

    /// <summary>One bucket of <see cref="ReduceBuckets"/>; <see cref="BackwardOverlap"/> reduces them one at a time on its own thread.</summary>
    internal SyncTimings ReduceBucket(int bucket, ReductionTarget target, long step, CancellationToken cancellationToken)
    {
        target.BucketStarted?.Invoke(bucket);
        return HierarchicalAllReduce.Run(target.IntraNode, target.LocalRank, target.CrossNode, Buffers[bucket], target.Generation, step, bucket,
            cancellationToken, target.Compression);
    }

    /// <summary>Makes every replica's parameters equal rank 0's: a sum-reduction to which the others contribute zeros.</summary>
    public void BroadcastParameters(bool isSource, IIntraNodeCollective intraNode, int localRank, IRingTransport? crossNode,
        long generation, CancellationToken cancellationToken)
    {
        ParametersToBuckets(isSource);
        ReduceBuckets(new ReductionTarget(intraNode, localRank, crossNode, generation), BroadcastStep, cancellationToken);
        BucketsToParameters();
    }

    /// <summary>
    /// Makes every replica equal to the source's: its parameters, then (when
    /// <paramref name="optimizerStateBytes"/> &gt; 0) its serialized optimizer state. The state's
    /// bytes travel one per float, so the sum with the others' zeros is exact whatever the bytes.
    /// </summary>
    public void BroadcastState(bool isSource, int optimizerStateBytes, IIntraNodeCollective intraNode, int localRank,
        IRingTransport? crossNode, long generation, CancellationToken cancellationToken)
    {
        BroadcastParameters(isSource, intraNode, localRank, crossNode, generation, cancellationToken);
        if (optimizerStateBytes <= 0) return;
        var blob = new float[optimizerStateBytes];
        if (isSource)
        {
            var bytes = SaveOptimizerState();
            if (bytes.Length != optimizerStateBytes)
                throw new InvalidOperationException($"the optimizer state is {bytes.Length} bytes, but the world was told {optimizerStateBytes}");
            for (var i = 0; i < bytes.Length; i++) blob[i] = bytes[i];
        }
        HierarchicalAllReduce.Run(intraNode, localRank, crossNode, blob, generation, OptimizerStateStep, 0, cancellationToken);
        if (isSource) return;
        var received = new byte[blob.Length];
        for (var i = 0; i < blob.Length; i++) received[i] = checked((byte)blob[i]);
        LoadOptimizerState(received);
    }

    /// <summary>Step id of the parameter broadcast in chunk keys (training steps count from 0).</summary>
    public const long BroadcastStep = -1;

    /// <summary>Step id of the optimizer-state broadcast that follows the parameters'.</summary>
    public const long OptimizerStateStep = -2;

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

    /// <summary>Puts the parameters in the buckets (zeros unless <paramref name="isSource"/>), for a sum-based broadcast.</summary>
    public void ParametersToBuckets(bool isSource)
    {
        foreach (var buffer in Buffers) Array.Clear(buffer);
        if (!isSource) return;
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

    /// <summary>SHA-256 of every parameter's bytes in model order: equal only for bitwise-equal replicas.</summary>
    public string Checksum()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
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
        return Convert.ToHexString(sha.GetHashAndReset())[..16].ToLowerInvariant();
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

    private static string ComputeFingerprint(IEnumerable<(string name, Parameter parameter)> named)
    {
        var text = new StringBuilder();
        foreach (var (name, p) in named)
            text.Append(name).Append(':').Append(string.Join('x', p.shape)).Append(':').Append(p.dtype).Append(';');
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16].ToLowerInvariant();
    }

    public void Dispose()
    {
        Overlap?.Dispose();
        Optimizer.Dispose();
        Model.Dispose();
    }
}
