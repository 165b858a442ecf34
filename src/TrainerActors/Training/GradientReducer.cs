using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using ActorTrain.Sync;
using ActorTrain.Sync.Buckets;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Training;

/// <summary>One step's reduction: the generation's process group, the step (the key of its collectives), and who to tell when a bucket starts.</summary>
internal sealed record ReductionStep(ProcessGroup Group, long Step, Action<int>? BucketStarted = null);

/// <summary>
/// The replica's gradient reducer, in the manner of DDP's: buckets in reverse parameter order
/// (<see cref="BucketLayout"/>), each all-reduced through the generation's <see cref="ProcessGroup"/>
/// as soon as it is complete, strictly in index order (the order every replica reduces them in).
/// <para>
/// With overlap (CPU replicas), a <see cref="GradientReadySignal"/> is put on the input of every
/// module that owns parameters, so backward reports when that module's parameter gradients are
/// complete; a bucket whose parameters are all complete is copied out and its all-reduce starts on
/// the reducer's own thread while backward goes on with the earlier layers. Whatever backward did
/// not report (a module whose input needs no gradient, such as the first layer; parameters no hooked
/// module owns alone) goes when backward has returned. Without overlap it is the same reducer with
/// no signals: every bucket becomes complete when backward has returned, and the reductions run on
/// the caller's thread in <see cref="Pass.Wait"/>. Either way the reduced bytes are the same: the
/// same buckets, the same order, the same collective.
/// Overlap is for CPU only: on CUDA, backward returns before the kernels that compute the gradients have run.
/// </para>
/// </summary>
internal sealed class GradientReducer : IDisposable
{
    private readonly Replica _replica;
    private readonly List<Action> _unhook = [];
    private readonly int[][] _parametersOfModule;
    private int[] _bucketOfParameter = [];
    private int[] _signalledParametersPerBucket = [];
    private readonly BlockingCollection<Action>? _work;
    private readonly Thread? _reducer;
    private Pass? _pass;
    private bool _armed;

    /// <summary>
    /// A reducer for <paramref name="replica"/>. With <paramref name="overlapThreadName"/> the buckets are reduced
    /// during backward on a thread of that name (CPU replicas only); without, after backward on the caller's thread.
    /// </summary>
    public GradientReducer(Replica replica, string? overlapThreadName = null)
    {
        _replica = replica;
        if (overlapThreadName is null)
        {
            _parametersOfModule = [];
            UseLayout(replica.Layout);
            return;
        }
        if (replica.Device.type != DeviceType.CPU)
            throw new NotSupportedException($"overlapping backward with the reduction needs a CPU replica; this one is on {replica.Device}");
        var model = replica.Model;
        var parameters = replica.Parameters;
        var indexOf = new Dictionary<IntPtr, int>();
        for (var i = 0; i < parameters.Count; i++) indexOf[parameters[i].Handle] = i;

        // Modules that own parameters directly and take one tensor. A parameter owned by two modules
        // (tied weights) is complete only after both have run backward: it is left to the end.
        var owners = new int[parameters.Count];
        var candidates = new List<(nn.Module<Tensor, Tensor> Module, int[] Parameters)>();
        foreach (var (_, module) in model.named_modules())
        {
            var own = module.named_parameters(recurse: false)
                .Select(p => indexOf.TryGetValue(p.parameter.Handle, out var i) ? i : -1)
                .Where(i => i >= 0)
                .ToArray();
            foreach (var i in own) owners[i]++;
            if (own.Length > 0 && module is nn.Module<Tensor, Tensor> hookable) candidates.Add((hookable, own));
        }

        var modules = new List<int[]>();
        foreach (var (module, own) in candidates)
        {
            var alone = own.Where(i => owners[i] == 1).ToArray();
            if (alone.Length == 0) continue;
            var index = modules.Count;
            modules.Add(alone);
            _unhook.Add(module.register_forward_pre_hook((_, input) => OnForward(index, input)).remove);
        }
        _parametersOfModule = modules.ToArray();
        UseLayout(replica.Layout);

        var work = new BlockingCollection<Action>();
        _work = work;
        _reducer = new Thread(() =>
        {
            foreach (var item in work.GetConsumingEnumerable()) item();
        })
        { IsBackground = true, Name = overlapThreadName };
        _reducer.Start();
    }

    /// <summary>Whether buckets are reduced while backward runs.</summary>
    public bool Overlaps => _reducer is not null;

    /// <summary>The bucket layout the maps were built for; rebuilt at <see cref="Begin"/> when the replica's changed.</summary>
    internal BucketLayout Layout { get; private set; } = null!;

    private void UseLayout(BucketLayout layout)
    {
        var parameterCount = _replica.Specs.Count;
        _bucketOfParameter = new int[parameterCount];
        foreach (var bucket in layout.Buckets)
            foreach (var e in bucket.Entries)
                _bucketOfParameter[e.ParameterIndex] = bucket.Index;
        _signalledParametersPerBucket = new int[layout.Buckets.Count];
        foreach (var m in _parametersOfModule)
            foreach (var p in m)
                _signalledParametersPerBucket[_bucketOfParameter[p]]++;
        Layout = layout;
    }

    /// <summary>Number of modules whose backward is signalled.</summary>
    public int HookedModules => _parametersOfModule.Length;

    /// <summary>
    /// Buckets that can start before backward returns: every parameter in them belongs to a hooked
    /// module, and it is not the last bucket (that one carries the step's counters and goes after backward).
    /// </summary>
    public int EarlyBuckets => Layout.Buckets.SkipLast(1).Count(b => b.Entries.Count > 0 && _signalledParametersPerBucket[b.Index] == b.Entries.Count);

    /// <summary>
    /// Starts a step: from now until <see cref="Pass.Finish"/>, buckets whose gradients are complete
    /// are reduced as <paramref name="step"/> says under <paramref name="cancellationToken"/>.
    /// </summary>
    public Pass Begin(ReductionStep step, CancellationToken cancellationToken)
    {
        // The buckets are shared between steps: a new step may start only once the last one's reductions are over.
        if (_pass is { Completed: false }) throw new InvalidOperationException("the previous step's reduction has not been waited for");
        if (!ReferenceEquals(Layout, _replica.Layout)) UseLayout(_replica.Layout);
        var onDevice = step.Group.Device is not null;
        if (onDevice && Overlaps)
            throw new NotSupportedException("a process group that reduces on the device needs the reduction after backward; this reducer overlaps it");
        _replica.PlaceBuckets(onDevice);
        _pass = new Pass(this, step, cancellationToken);
        return _pass;
    }

    /// <summary>While armed, forward puts the signals in and backward fires them (the last micro-batch of a step).</summary>
    private void Arm(bool armed) => _armed = armed;

    private Tensor OnForward(int module, Tensor input)
    {
        if (!_armed || _pass is not { } pass) return input;
        if (!input.requires_grad)
        {
            // Nothing flows back through this input (the first layer): the module's gradients wait for the end.
            pass.Unsignalled(module);
            return input;
        }
        pass.Called(module);
        return GradientReadySignal.Wrap(input, () => pass.Fired(module));
    }

    public void Dispose()
    {
        foreach (var unhook in _unhook) unhook();
        _unhook.Clear();
        _work?.CompleteAdding();
        _reducer?.Join();
        _work?.Dispose();
    }

    /// <summary>One step's overlapped reduction.</summary>
    public sealed class Pass
    {
        private readonly GradientReducer _owner;
        private readonly ReductionStep _step;
        private readonly Queue<Action> _deferred = new();
        private readonly CancellationTokenSource _cancel;
        private readonly int[] _calls;
        private readonly int[] _fired;
        private readonly bool[] _unsignalled;
        private readonly int[] _waitingParameters;
        private readonly object _gate = new();
        private int _nextBucket;
        private int _outstanding;
        private int _nonFinite;
        private double _intraMs;
        private double _crossMs;
        private ExceptionDispatchInfo? _failure;

        internal Pass(GradientReducer owner, ReductionStep step, CancellationToken cancellationToken)
        {
            _owner = owner;
            _step = step;
            _cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var modules = owner._parametersOfModule.Length;
            _calls = new int[modules];
            _fired = new int[modules];
            _unsignalled = new bool[modules];
            _waitingParameters = owner.Layout.Buckets.Select(b => b.Entries.Count).ToArray();
        }

        /// <summary>Buckets whose reduction started before <see cref="Finish"/>.</summary>
        public int StartedDuringBackward { get; private set; }

        /// <summary>Waited for (or aborted): nothing of this step is reducing any more.</summary>
        internal bool Completed { get; private set; }

        internal void Called(int module) => _calls[module]++;

        internal void Unsignalled(int module) => _unsignalled[module] = true;

        /// <summary>
        /// Runs inside backward, called from native code: it must not throw. A module called several
        /// times in forward is complete when the signal of every call has fired.
        /// </summary>
        internal void Fired(int module)
        {
            try
            {
                if (++_fired[module] != _calls[module] || _unsignalled[module]) return;
                foreach (var p in _owner._parametersOfModule[module]) _waitingParameters[_owner._bucketOfParameter[p]]--;
                StartCompleteBuckets(lastAllowed: _waitingParameters.Length - 2);
            }
            catch (Exception e)
            {
                lock (_gate) _failure ??= ExceptionDispatchInfo.Capture(e);
                _cancel.Cancel();
            }
        }

        /// <summary>
        /// Runs one micro-batch's forward and backward (<paramref name="forwardBackward"/>); with
        /// <paramref name="lastMicroBatch"/> on an overlapping reducer, buckets start reducing while its backward runs.
        /// </summary>
        public float Run(bool lastMicroBatch, Func<float> forwardBackward)
        {
            _owner.Arm(lastMicroBatch && _owner.Overlaps);
            try
            {
                return forwardBackward();
            }
            finally
            {
                _owner.Arm(false);
            }
        }

        /// <summary>
        /// After backward: copies and starts every bucket not started yet, the last with the step's
        /// counters (<see cref="Replica.GradientsToBuckets"/>'s rules). Returns the number of
        /// non-finite gradient values this replica found.
        /// </summary>
        public int Finish(float loss, bool voteToPause)
        {
            _owner.Arm(false);
            var replica = _owner._replica;
            var last = _waitingParameters.Length - 1;
            if (_nextBucket == 0)
            {
                // Nothing is on its way yet: a replica with a non-finite value withholds every bucket.
                _nonFinite = replica.GradientsToBuckets(loss);
                replica.VoteToPause(voteToPause);
                for (var b = 0; b <= last; b++) Start(b);
                return _nonFinite;
            }
            Array.Clear(_waitingParameters);
            StartCompleteBuckets(lastAllowed: last - 1);
            _nonFinite += replica.FillBucket(last);
            // Buckets already on their way cannot be withheld; a non-finite value in them makes the sum
            // non-finite, which every replica sees, so the step is skipped everywhere all the same.
            if (_nonFinite > 0 || !float.IsFinite(loss)) replica.ClearLastBucketGradients();
            _nonFinite = replica.SetCounters(_nonFinite, loss);
            replica.VoteToPause(voteToPause);
            Start(last);
            return _nonFinite;
        }

        /// <summary>Blocks until every started bucket is reduced; rethrows the first failure (a cancellation included).</summary>
        public SyncTimings Wait()
        {
            // Without overlap the reductions run here, on the caller's thread, in bucket order.
            while (_deferred.TryDequeue(out var reduction)) reduction();
            Complete();
            _failure?.Throw();
            return new SyncTimings(_intraMs, _crossMs);
        }

        /// <summary>Backward failed: stops what was started and waits for it, so the buffers are free again.</summary>
        public void Abort()
        {
            _owner.Arm(false);
            _cancel.Cancel();
            _deferred.Clear();
            Complete();
        }

        private void Complete()
        {
            lock (_gate)
            {
                while (_outstanding > 0) Monitor.Wait(_gate);
            }
            _cancel.Dispose();
            Completed = true;
        }

        private void StartCompleteBuckets(int lastAllowed)
        {
            while (_nextBucket <= lastAllowed && _waitingParameters[_nextBucket] == 0)
            {
                _nonFinite += _owner._replica.FillBucket(_nextBucket);
                if (_owner._armed) StartedDuringBackward++;
                Start(_nextBucket);
            }
        }

        private void Start(int bucket)
        {
            _nextBucket = bucket + 1;
            lock (_gate) _outstanding++;
            var token = _cancel.Token;
            Action reduction = () =>
            {
                try
                {
                    token.ThrowIfCancellationRequested();
                    _step.BucketStarted?.Invoke(bucket);
                    var t = _owner._replica.ReduceBucket(_step.Group, bucket, new CollectiveKey(_step.Step, bucket), token);
                    lock (_gate)
                    {
                        _intraMs += t.IntraNodeMs;
                        _crossMs += t.CrossNodeMs;
                    }
                }
                catch (Exception e)
                {
                    // The first failure is the one to report; the buckets queued after it end at once.
                    lock (_gate) _failure ??= ExceptionDispatchInfo.Capture(e);
                    _cancel.Cancel();
                }
                finally
                {
                    lock (_gate)
                    {
                        _outstanding--;
                        Monitor.PulseAll(_gate);
                    }
                }
            };
            if (_owner._work is { } work) work.Add(reduction);
            else _deferred.Enqueue(reduction);
        }
    }
}
