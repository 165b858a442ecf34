namespace ActorTrain.Sync.Collectives.Nccl;

/// <summary>
/// Intra-node collective over NCCL: one communicator and one CUDA stream per local rank, each rank
/// on its own GPU, all created from one <see cref="NcclUniqueId"/>. Each trainer calls from its own
/// thread (NCCL's one-device-per-thread pattern).
/// <para>
/// On device pointers (<see cref="IDeviceIntraNodeCollective"/>) the data stays on the GPU. On host
/// memory (<see cref="IIntraNodeCollective"/>, what the existing trainers use) each call copies the
/// buffer to a per-rank device staging buffer, runs NCCL there and copies the result back.
/// </para>
/// <para>
/// NCCL's reduce-scatter and all-gather need equal slices, while <see cref="Partition"/> gives the
/// first <c>length % LocalSize</c> slices one element more. Slice j is therefore laid out at
/// j × (largest slice) in the staging buffer, padded with zeros; device buffers whose length divides
/// evenly are reduced in place without staging.
/// </para>
/// <para>
/// Waiting polls the stream so that cancellation and NCCL's asynchronous errors are noticed: either
/// aborts every communicator (peers blocked in the same collective then fail instead of hanging),
/// and the collective refuses further calls. Any failure of any rank does the same.
/// </para>
/// </summary>
internal sealed class NcclCollective : IIntraNodeCollective, IDeviceIntraNodeCollective
{
    private const int SpinsBeforeSleeping = 64;

    private readonly NcclLibrary _nccl;
    private readonly CudaRuntime _cuda;
    private readonly int[] _devices;
    private readonly Rank[] _ranks;
    private readonly Lock _abortGate = new();

    // Readers: a rank calling NCCL on its communicator; writer: Abort, which frees them all.
    private readonly ReaderWriterLockSlim _commGate = new();
    private volatile string? _abortReason;
    private bool _disposed;

    private NcclCollective(NcclLibrary nccl, CudaRuntime cuda, int[] devices, IntPtr[] comms, NcclUniqueId? uniqueId)
    {
        _nccl = nccl;
        _cuda = cuda;
        _devices = devices;
        UniqueId = uniqueId;
        _ranks = new Rank[devices.Length];
        try
        {
            for (var r = 0; r < devices.Length; r++)
            {
                _cuda.SetDevice(devices[r]);
                _ranks[r] = new Rank(comms[r], _cuda.StreamCreate());
            }
        }
        catch
        {
            AbortCommunicators(comms);
            throw;
        }
    }

    /// <summary>
    /// One communicator per device of <paramref name="devices"/> (local rank i on device i of the list),
    /// joined from one unique id inside one NCCL group on the calling thread. Pass the id when it came
    /// from elsewhere (a message); without one a new id is made.
    /// </summary>
    public static NcclCollective Create(NcclLibrary nccl, CudaRuntime cuda, IReadOnlyList<int> devices, NcclUniqueId? uniqueId = null)
    {
        var list = Validate(nccl, cuda, devices);
        var id = uniqueId ?? nccl.GetUniqueId();
        var comms = new IntPtr[list.Length];
        nccl.GroupStart();
        Exception? failure = null;
        try
        {
            for (var r = 0; r < list.Length; r++)
            {
                cuda.SetDevice(list[r]);
                comms[r] = nccl.CommInitRank(list.Length, id, r);
            }
        }
        catch (Exception e) when (e is NcclException or CudaException)
        {
            failure = e;
        }

        try
        {
            nccl.GroupEnd();
        }
        catch (NcclException e) when (failure is null)
        {
            failure = e;
        }

        if (failure is not null)
        {
            AbortCommunicators(nccl, comms);
            throw new InvalidOperationException(
                $"cannot create NCCL communicators for CUDA devices {string.Join(",", list)}: {failure.Message}", failure);
        }

        return new NcclCollective(nccl, cuda, list, comms, id);
    }

    /// <summary>One communicator per device of <paramref name="devices"/> by <c>ncclCommInitAll</c> (single process; no unique id to pass around).</summary>
    public static NcclCollective CreateWithInitAll(NcclLibrary nccl, CudaRuntime cuda, IReadOnlyList<int> devices)
    {
        var list = Validate(nccl, cuda, devices);
        return new NcclCollective(nccl, cuda, list, nccl.CommInitAll(list), uniqueId: null);
    }

    /// <inheritdoc />
    public string Name => "nccl";

    /// <inheritdoc cref="IIntraNodeCollective.LocalSize" />
    public int LocalSize => _devices.Length;

    /// <summary>The id the communicators were created from (null with <see cref="CreateWithInitAll"/>); send <see cref="NcclUniqueId.ToBytes"/> to whoever must join.</summary>
    public NcclUniqueId? UniqueId { get; }

    /// <summary>Why the communicators were aborted, or null while the collective is usable.</summary>
    public string? AbortReason => _abortReason;

    /// <summary>For logs: NCCL's version and file, and the devices.</summary>
    public string Description => $"NCCL {_nccl.VersionText} ({_nccl.Path}) on CUDA devices {string.Join(",", _devices)}";

    /// <inheritdoc />
    public IDeviceMemory Memory => _cuda;

    /// <inheritdoc />
    public int DeviceOf(int localRank)
    {
        CheckRank(localRank);
        return _devices[localRank];
    }

    // ---- host memory (IIntraNodeCollective) ----

    /// <inheritdoc />
    public void ReduceScatter(int localRank, Memory<float> buffer, CancellationToken cancellationToken) =>
        Run(localRank, "ncclReduceScatter", cancellationToken, rank =>
        {
            var chunk = StageAllSlices(rank, buffer.Span);
            WithComm(rank, queue => _nccl.ReduceScatter(new NcclBuffers(rank.Staging, rank.Staging + SliceBytes(localRank, chunk), chunk), NcclRedOp.Sum, queue));
            Wait(localRank, rank, "ncclReduceScatter", cancellationToken);
            var (offset, count) = Partition.Slice(buffer.Length, LocalSize, localRank);
            _cuda.CopyToHost(rank.Staging + SliceBytes(localRank, chunk), buffer.Span.Slice(offset, count));
        });

    /// <inheritdoc />
    public void AllGather(int localRank, Memory<float> buffer, CancellationToken cancellationToken) =>
        Run(localRank, "ncclAllGather", cancellationToken, rank =>
        {
            var chunk = PaddedSlice(buffer.Length);
            EnsureStaging(rank, chunk * LocalSize);
            var (offset, count) = Partition.Slice(buffer.Length, LocalSize, localRank);
            _cuda.CopyToDevice(buffer.Span.Slice(offset, count), rank.Staging + SliceBytes(localRank, chunk));
            WithComm(rank, queue => _nccl.AllGather(new NcclBuffers(rank.Staging + SliceBytes(localRank, chunk), rank.Staging, chunk), queue));
            Wait(localRank, rank, "ncclAllGather", cancellationToken);
            for (var j = 0; j < LocalSize; j++)
            {
                var (o, c) = Partition.Slice(buffer.Length, LocalSize, j);
                if (j != localRank && c > 0)
                {
                    _cuda.CopyToHost(rank.Staging + SliceBytes(j, chunk), buffer.Span.Slice(o, c));
                }
            }
        });

    /// <inheritdoc />
    public void AllReduce(int localRank, Memory<float> buffer, CancellationToken cancellationToken) =>
        Run(localRank, "ncclAllReduce", cancellationToken, rank =>
        {
            EnsureStaging(rank, buffer.Length);
            _cuda.CopyToDevice(buffer.Span, rank.Staging);
            WithComm(rank, queue => _nccl.AllReduce(new NcclBuffers(rank.Staging, rank.Staging, buffer.Length), NcclRedOp.Sum, queue));
            Wait(localRank, rank, "ncclAllReduce", cancellationToken);
            _cuda.CopyToHost(rank.Staging, buffer.Span);
        });

    /// <summary>After the call, every local buffer equals local rank <paramref name="rootLocalRank"/>'s buffer (host memory).</summary>
    public void Broadcast(int localRank, int rootLocalRank, Memory<float> buffer, CancellationToken cancellationToken)
    {
        CheckRank(rootLocalRank);
        Run(localRank, "ncclBroadcast", cancellationToken, rank =>
        {
            EnsureStaging(rank, buffer.Length);
            if (localRank == rootLocalRank)
            {
                _cuda.CopyToDevice(buffer.Span, rank.Staging);
            }

            WithComm(rank, queue => _nccl.Broadcast(new NcclBuffers(rank.Staging, rank.Staging, buffer.Length), rootLocalRank, queue));
            Wait(localRank, rank, "ncclBroadcast", cancellationToken);
            if (localRank != rootLocalRank)
            {
                _cuda.CopyToHost(rank.Staging, buffer.Span);
            }
        });
    }

    // ---- device memory (IDeviceIntraNodeCollective) ----

    /// <inheritdoc />
    public void ReduceScatter(int localRank, IntPtr devicePointer, long count, CancellationToken cancellationToken) =>
        Run(localRank, "ncclReduceScatter", cancellationToken, rank =>
        {
            var length = CheckedLength(count);
            if (length % LocalSize == 0)
            {
                var slice = length / LocalSize;
                WithComm(rank, queue => _nccl.ReduceScatter(new NcclBuffers(devicePointer, devicePointer + SliceBytes(localRank, slice), slice), NcclRedOp.Sum, queue));
                Wait(localRank, rank, "ncclReduceScatter", cancellationToken);
                return;
            }

            var chunk = PaddedSlice(length);
            EnsureStaging(rank, chunk * LocalSize);
            _cuda.Memset(rank.Staging, 0, (long)chunk * LocalSize * sizeof(float));
            for (var j = 0; j < LocalSize; j++)
            {
                var (o, c) = Partition.Slice(length, LocalSize, j);
                CopyOnDevice(devicePointer + ElementBytes(o), rank.Staging + SliceBytes(j, chunk), c);
            }

            WithComm(rank, queue => _nccl.ReduceScatter(new NcclBuffers(rank.Staging, rank.Staging + SliceBytes(localRank, chunk), chunk), NcclRedOp.Sum, queue));
            Wait(localRank, rank, "ncclReduceScatter", cancellationToken);
            var (offset, own) = Partition.Slice(length, LocalSize, localRank);
            CopyOnDevice(rank.Staging + SliceBytes(localRank, chunk), devicePointer + ElementBytes(offset), own);
        });

    /// <inheritdoc />
    public void AllGather(int localRank, IntPtr devicePointer, long count, CancellationToken cancellationToken) =>
        Run(localRank, "ncclAllGather", cancellationToken, rank =>
        {
            var length = CheckedLength(count);
            if (length % LocalSize == 0)
            {
                var slice = length / LocalSize;
                WithComm(rank, queue => _nccl.AllGather(new NcclBuffers(devicePointer + SliceBytes(localRank, slice), devicePointer, slice), queue));
                Wait(localRank, rank, "ncclAllGather", cancellationToken);
                return;
            }

            var chunk = PaddedSlice(length);
            EnsureStaging(rank, chunk * LocalSize);
            var (offset, own) = Partition.Slice(length, LocalSize, localRank);
            CopyOnDevice(devicePointer + ElementBytes(offset), rank.Staging + SliceBytes(localRank, chunk), own);
            WithComm(rank, queue => _nccl.AllGather(new NcclBuffers(rank.Staging + SliceBytes(localRank, chunk), rank.Staging, chunk), queue));
            Wait(localRank, rank, "ncclAllGather", cancellationToken);
            for (var j = 0; j < LocalSize; j++)
            {
                var (o, c) = Partition.Slice(length, LocalSize, j);
                if (j != localRank)
                {
                    CopyOnDevice(rank.Staging + SliceBytes(j, chunk), devicePointer + ElementBytes(o), c);
                }
            }
        });

    /// <inheritdoc />
    public void AllReduce(int localRank, IntPtr devicePointer, long count, CancellationToken cancellationToken) =>
        Run(localRank, "ncclAllReduce", cancellationToken, rank =>
        {
            ArgumentOutOfRangeException.ThrowIfNegative(count);
            WithComm(rank, queue => _nccl.AllReduce(new NcclBuffers(devicePointer, devicePointer, count), NcclRedOp.Sum, queue));
            Wait(localRank, rank, "ncclAllReduce", cancellationToken);
        });

    /// <inheritdoc />
    public void Broadcast(int localRank, int rootLocalRank, IntPtr devicePointer, long count, CancellationToken cancellationToken)
    {
        CheckRank(rootLocalRank);
        Run(localRank, "ncclBroadcast", cancellationToken, rank =>
        {
            ArgumentOutOfRangeException.ThrowIfNegative(count);
            WithComm(rank, queue => _nccl.Broadcast(new NcclBuffers(devicePointer, devicePointer, count), rootLocalRank, queue));
            Wait(localRank, rank, "ncclBroadcast", cancellationToken);
        });
    }

    /// <summary>
    /// Aborts every communicator (idempotent): collectives in flight on any rank fail instead of
    /// waiting for a peer that will not come, and later calls are refused with <paramref name="reason"/>.
    /// </summary>
    public void Abort(string reason)
    {
        lock (_abortGate)
        {
            if (_abortReason is not null)
            {
                return;
            }

            _abortReason = reason;
        }

        _commGate.EnterWriteLock();
        try
        {
            AbortCommunicators(_nccl, _ranks.Select(r => r?.Comm ?? IntPtr.Zero).ToArray());
            foreach (var rank in _ranks)
            {
                rank?.ForgetComm();
            }
        }
        finally
        {
            _commGate.ExitWriteLock();
        }
    }

    /// <inheritdoc cref="IDisposable.Dispose" />
    public void Dispose()
    {
        lock (_abortGate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        // Best effort: a failed device cannot be cleaned up, and Dispose runs while a node stops.
        for (var r = 0; r < _ranks.Length; r++)
        {
            var rank = _ranks[r];
            if (rank is null)
            {
                continue;
            }

            TryNative(() => _cuda.SetDevice(_devices[r]));
            if (rank.Comm != IntPtr.Zero && _abortReason is null)
            {
                TryNative(() => _nccl.CommDestroy(rank.Comm));
            }

            TryNative(() => _cuda.StreamDestroy(rank.Stream));
            if (rank.Staging != IntPtr.Zero)
            {
                TryNative(() => _cuda.Free(rank.Staging));
            }
        }

        _commGate.Dispose();
    }

    private void Run(int localRank, string operation, CancellationToken cancellationToken, Action<Rank> body)
    {
        CheckRank(localRank);
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfAborted(operation);
        var rank = _ranks[localRank];
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            _cuda.SetDevice(_devices[localRank]);
            body(rank);
        }
        catch (Exception e) when (e is NcclException or CudaException or OperationCanceledException or ArgumentException)
        {
            // A rank that stops here would leave its peers waiting inside NCCL for ever.
            Abort($"{operation} on local rank {localRank} (CUDA device {_devices[localRank]}) failed: {e.Message}");
            throw;
        }
    }

    /// <summary>Waits for the rank's stream, watching for cancellation, NCCL's asynchronous errors and an abort by another rank.</summary>
    private void Wait(int localRank, Rank rank, string operation, CancellationToken cancellationToken)
    {
        var spins = 0;
        while (!_cuda.StreamQuery(rank.Stream))
        {
            ThrowIfAborted(operation);
            var asyncError = 0;
            WithComm(rank, queue => asyncError = _nccl.CommGetAsyncError(queue.Comm));
            if (asyncError != (int)NcclResult.Success && asyncError != (int)NcclResult.InProgress)
            {
                throw new NcclException($"{operation} (asynchronous error on local rank {localRank})", asyncError, _nccl.GetErrorString(asyncError));
            }

            cancellationToken.ThrowIfCancellationRequested();
            if (++spins < SpinsBeforeSleeping)
            {
                Thread.SpinWait(20);
            }
            else
            {
                Thread.Sleep(spins < SpinsBeforeSleeping * 4 ? 0 : 1);
            }
        }
    }

    /// <summary>Calls NCCL on the rank's communicator and stream unless (and never while) another rank aborts them.</summary>
    private void WithComm(Rank rank, Action<NcclQueue> call)
    {
        _commGate.EnterReadLock();
        try
        {
            ThrowIfAborted("the NCCL call");
            call(new NcclQueue(rank.Comm, rank.Stream));
        }
        finally
        {
            _commGate.ExitReadLock();
        }
    }

    private void ThrowIfAborted(string operation)
    {
        if (_abortReason is { } reason)
        {
            throw new InvalidOperationException($"{operation}: the NCCL communicators were aborted: {reason}");
        }
    }

    /// <summary>Copies every host slice into the padded staging layout; returns the padded slice length.</summary>
    private int StageAllSlices(Rank rank, ReadOnlySpan<float> buffer)
    {
        var chunk = PaddedSlice(buffer.Length);
        EnsureStaging(rank, chunk * LocalSize);
        if (chunk * LocalSize != buffer.Length)
        {
            _cuda.Memset(rank.Staging, 0, (long)chunk * LocalSize * sizeof(float));
        }

        for (var j = 0; j < LocalSize; j++)
        {
            var (o, c) = Partition.Slice(buffer.Length, LocalSize, j);
            _cuda.CopyToDevice(buffer.Slice(o, c), rank.Staging + SliceBytes(j, chunk));
        }

        return chunk;
    }

    /// <summary>Grows the rank's staging buffer (on the calling thread's device, which is the rank's) to at least <paramref name="elements"/>.</summary>
    private void EnsureStaging(Rank rank, long elements)
    {
        if (rank.StagingElements >= elements)
        {
            return;
        }

        if (rank.Staging != IntPtr.Zero)
        {
            _cuda.Free(rank.Staging);
            rank.SetStaging(IntPtr.Zero, 0);
        }

        // Grow by half again so buckets of slightly different sizes do not reallocate every call.
        var capacity = Math.Max(elements, rank.StagingElements + (rank.StagingElements / 2));
        rank.SetStaging(_cuda.Malloc(capacity * sizeof(float)), capacity);
    }

    private void CopyOnDevice(IntPtr source, IntPtr destination, int elements) =>
        _cuda.Memcpy(destination, source, ElementBytes(elements), CudaMemcpyKind.DeviceToDevice);

    private int PaddedSlice(int length) => Math.Max(1, Partition.Slice(length, LocalSize, 0).Count);

    private static int SliceBytes(int slice, int sliceElements) => checked(slice * sliceElements * sizeof(float));

    private static int ElementBytes(int elements) => checked(elements * sizeof(float));

    private static int CheckedLength(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return count <= int.MaxValue / sizeof(float)
            ? (int)count
            : throw new ArgumentOutOfRangeException(nameof(count), count, "Reduce-scatter and all-gather take at most 2^29 elements per call; split larger buffers into buckets.");
    }

    private void CheckRank(int localRank)
    {
        if ((uint)localRank >= (uint)LocalSize)
        {
            throw new ArgumentOutOfRangeException(nameof(localRank), localRank, $"Local rank must be in 0..{LocalSize - 1}.");
        }
    }

    private static int[] Validate(NcclLibrary nccl, CudaRuntime cuda, IReadOnlyList<int> devices)
    {
        ArgumentNullException.ThrowIfNull(nccl);
        ArgumentNullException.ThrowIfNull(cuda);
        ArgumentNullException.ThrowIfNull(devices);
        if (devices.Count == 0)
        {
            throw new ArgumentException("At least one CUDA device is needed.", nameof(devices));
        }

        if (devices.Distinct().Count() != devices.Count)
        {
            // NCCL refuses two ranks of one communicator on one device.
            throw new ArgumentException($"Each local rank needs its own CUDA device; got {string.Join(",", devices)}.", nameof(devices));
        }

        return devices.ToArray();
    }

    private void AbortCommunicators(IntPtr[] comms) => AbortCommunicators(_nccl, comms);

    private static void AbortCommunicators(NcclLibrary nccl, IntPtr[] comms)
    {
        foreach (var comm in comms.Where(c => c != IntPtr.Zero))
        {
            TryNative(() => nccl.CommAbort(comm));
        }
    }

    private static void TryNative(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is NcclException or CudaException)
        {
            // Cleanup after a failure: the first error has already been reported.
        }
    }

    /// <summary>Per local rank: its communicator, stream and staging buffer. Touched only by that rank's thread, except by Abort and Dispose.</summary>
    private sealed class Rank(IntPtr comm, IntPtr stream)
    {
        public IntPtr Comm { get; private set; } = comm;
        public IntPtr Stream { get; } = stream;
        public IntPtr Staging { get; private set; }
        public long StagingElements { get; private set; }

        public void SetStaging(IntPtr pointer, long elements)
        {
            Staging = pointer;
            StagingElements = elements;
        }

        public void ForgetComm() => Comm = IntPtr.Zero;
    }
}
