using System.Reflection;
using System.Runtime.CompilerServices;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using ActorTrain.Cluster.Transport;
using ActorTrain.Sync;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;
using ActorTrain.Sync.Transport.Tcp;
using ActorTrain.TrainerActors.Actors;
using ActorTrain.TrainerActors.Checkpoints;
using ActorTrain.TrainerActors.Data;
using ActorTrain.TrainerActors.DataPlane;
using ActorTrain.TrainerActors.Reporting;
using ActorTrain.TrainerActors.Training;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>
/// What a node compiles before the run needs it, in the background while its ActorSystem starts and
/// joins the cluster (which takes seconds): the wire messages' formatters and, on a node that trains,
/// the TCP data plane, the checkpoint format (its first write took 88 ms against 7 ms for the next,
/// mostly the JSON header's serializer; it is written to a temp folder and removed) and the step's
/// reports (metrics, the progress line); and the code a generation's start, its steps and an epoch's
/// end run through (<see cref="NodePath"/>, <see cref="CoordinatorPath"/>). The trainers warm their own
/// step and evaluation up before registering. A failure costs only time at the first step; it is
/// logged at DEBUG.
/// </summary>
internal static class NodeWarmUp
{
    /// <param name="trains">Whether this node trains: it warms the data plane and the checkpoint format up.</param>
    /// <param name="compileAhead">actortrain.training.warm-up: whether the run path's types are compiled ahead
    /// (<see cref="NodePath"/> on a node that trains, <see cref="CoordinatorPath"/> on a seed), after the rest. At the
    /// lowest CPU priority (nice 19) it did not finish before the generation on two cores with two nodes, and gained
    /// nothing; at normal priority the generation formed about 0.25 s later there and epoch 1 took about 0.1 s less.</param>
    /// <param name="hostsCoordinator">Whether the coordinator singleton may run here (a node with the seed role).</param>
    public static Task<Outcome> Start(bool trains, bool compileAhead, bool hostsCoordinator) => Task.Run(async () =>
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var compiled = 0;
        var problems = new List<string>(WireWarmUp.Run());
        if (trains)
        {
            try
            {
                WriteCheckpoint();
            }
            catch (Exception e)
            {
                problems.Add($"checkpoint format: {e.GetBaseException().Message}");
            }
            try
            {
                // What the first step reports: its phases into a histogram (1.3 ms of the first step), the loss line.
                var metrics = new NodeMetrics("warm-up");
                metrics.ObserveStep(1, 1, 1, 1);
                metrics.StepCompleted();
                metrics.AddBytes(TransportLabel.Tcp, sent: true, 1);
                ProgressProtocol.Encode(new ProgressEvent(ProgressKinds.LossLine, 1, 1, 1, 1, 1, 1, "[1,     1] loss: 1.000"));
            }
            catch (Exception e)
            {
                problems.Add($"step reports: {e.GetBaseException().Message}");
            }
            try
            {
                await TcpWarmUp.RunAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                problems.Add($"data plane: {e.GetBaseException().Message}");
            }
        }
        if (compileAhead)
        {
            var (n, failures) = Compile([.. trains ? NodePath : [], .. hostsCoordinator ? CoordinatorPath : []]);
            compiled = n;
            problems.AddRange(failures);
        }
        return new Outcome(problems, compiled, System.Diagnostics.Stopwatch.GetElapsedTime(started));
    });

    /// <summary>What the warm-up could not do, how many methods it compiled ahead, and how long it took.</summary>
    public sealed record Outcome(IReadOnlyList<string> Problems, int CompiledAhead, TimeSpan Took);

    /// <summary>
    /// The types whose code runs first when a generation starts, in its first step and at the first epoch's end, on a
    /// node that trains (this list) and on the one that hosts the coordinator (<see cref="CoordinatorPath"/>). Without
    /// tiered compilation (build/ActorTrain.targets) each method is compiled, fully optimised, on its first call: on two
    /// cores, about 100 ms of epoch 1 went to these (docs/PERFORMANCE.md, "Epoch 1: a whole warm-up step, and the run
    /// path compiled ahead"). Found by logging the runtime's JIT events between "Generation 1" and the first epoch's
    /// end. The generic ones (the coordinator's bookkeeping over its node type) are left to their first call.
    /// </summary>
    internal static readonly Type[] NodePath =
    [
        typeof(NodeActor), typeof(NodeTrainers), typeof(NodeDevices), typeof(NodeDataPlane), typeof(TrainerActor), typeof(TrainerProgress),
        typeof(Replica), typeof(GradientReducer), typeof(DistributedSampler), typeof(TrainerCheckpoints), typeof(CheckpointStore),
        typeof(ProcessGroup), typeof(SharedMemoryCollective), typeof(RingAllReduce), typeof(ChunkMailbox), typeof(TcpRingTransport),
        typeof(GradientEndpointActor), typeof(NodeMetrics), typeof(TrainingPosition), typeof(LineProgressSink), typeof(NodeOutputProgressSink),
        typeof(NodeOutput), typeof(ProgressLine),
    ];

    /// <summary>The coordinator's part of the run path (see <see cref="NodePath"/>), compiled on seeds: its singleton runs on the seed role.</summary>
    internal static readonly Type[] CoordinatorPath =
    [
        typeof(CoordinatorActor), typeof(RunMonitor), typeof(EpochCourse), typeof(RunRecorder), typeof(ProgressTracker), typeof(Stragglers),
        typeof(SourceReplica), typeof(CoordinatorLines), typeof(HangDetector), typeof(JobMetrics),
    ];

    /// <summary>
    /// Compiles every method of <paramref name="types"/> and of their nested types (lambdas, iterators and async state
    /// machines live there) that can be compiled without type arguments. Returns how many were compiled and what failed.
    /// </summary>
    internal static (int Compiled, IReadOnlyList<string> Failures) Compile(IEnumerable<Type> types)
    {
        const BindingFlags declared = BindingFlags.DeclaredOnly | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;
        var compiled = 0;
        var failures = new List<string>();
        var pending = new Stack<Type>(types);
        while (pending.TryPop(out var type))
        {
            foreach (var nested in type.GetNestedTypes(BindingFlags.Public | BindingFlags.NonPublic)) pending.Push(nested);
            if (type.ContainsGenericParameters || type.IsInterface) continue;
            foreach (var method in type.GetMethods(declared).Concat<MethodBase>(type.GetConstructors(declared)))
            {
                if (method.IsAbstract || method.ContainsGenericParameters || (method.Attributes & MethodAttributes.PinvokeImpl) != 0 ||
                    (method.MethodImplementationFlags & (MethodImplAttributes.InternalCall | MethodImplAttributes.Runtime)) != 0)
                    continue;
                try
                {
                    RuntimeHelpers.PrepareMethod(method.MethodHandle);
                    compiled++;
                }
                catch (Exception e)
                {
                    failures.Add($"{type.FullName}.{method.Name}: {e.GetBaseException().Message}");
                }
            }
        }
        return (compiled, failures);
    }

    /// <summary>
    /// The position section a trainer's checkpoint carries, and a checkpoint of a few bytes written through a
    /// <see cref="CheckpointStore"/> into a folder of its own under the temp directory, removed after: the first real
    /// checkpoint took 18 ms against 8 ms for the next ones (the file's creation, flush, rename and the store's listing).
    /// </summary>
    private static void WriteCheckpoint()
    {
        MessagePack.MessagePackSerializer.Serialize((TrainerHaltState)WireWarmUp.Sample(typeof(TrainerHaltState), depth: 0)!, ActorTrainMessageSerializer.Options);
        var dir = Path.Combine(Path.GetTempPath(), $"actortrain-warm-up-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            new CheckpointStore(dir, keep: 1).Save(new TrainingState
            {
                JobId = "warm-up",
                ModelFingerprint = "warm-up",
                Epoch = 1,
                SamplesConsumedInEpoch = 0,
                GlobalStep = 1,
                WorldSize = 1,
                Seed = 1,
                CreatedUtc = DateTime.UtcNow,
                Sections = new Dictionary<string, byte[]> { [TrainingState.ModelSection] = [1], [TrainingState.OptimizerSection] = [2] },
            });
        }
        finally
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Nothing was written, or the temp directory went away: nothing to remove.
            }
        }
    }

    /// <summary>Logs, at DEBUG, what the warm-up did and could not do, once it is over.</summary>
    public static void ReportTo(Task<Outcome> warmUp, ActorSystem system) =>
        warmUp.ContinueWith(t =>
        {
            if (!t.IsCompletedSuccessfully)
            {
                system.Log.Debug("Warm-up failed: {0}", t.Exception?.GetBaseException().Message ?? "cancelled");
                return;
            }
            system.Log.Debug("Warm-up done in {0:0} ms, {1} methods compiled ahead", t.Result.Took.TotalMilliseconds, t.Result.CompiledAhead);
            if (t.Result.Problems.Count > 0) system.Log.Debug("Warm-up left out: {0}", string.Join("; ", t.Result.Problems));
        }, TaskScheduler.Default);
}
