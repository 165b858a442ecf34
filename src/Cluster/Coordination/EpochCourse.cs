using System.Security.Cryptography;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Sync.Compression;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The course of a run through its generations and epochs: the plan, the generation that trains and its
/// world, the epoch it runs, the nodes the coordinator waits for (to be ready, to hand in their final
/// state), which epoch comes next and when the run is finished. The history lives in the
/// <see cref="RunRecorder"/> it is given. Pure: the coordinator sends what it decides.
/// </summary>
internal sealed class EpochCourse(RunRecorder record)
{
    private readonly HashSet<string> _pending = [];
    private readonly List<NodeFinished> _finished = [];

    /// <summary>What every generation trains with (its data-plane token aside); null until the run starts or is taken over.</summary>
    public TrainingPlan? Plan { get; private set; }

    /// <summary>The latest generation: formed, forming, or taken over from a lost coordinator.</summary>
    public long Generation { get; private set; }

    /// <summary>The epoch the generation runs (0 before the first).</summary>
    public int Epoch { get; private set; }

    /// <summary>The latest world sent out; null before the first generation forms.</summary>
    public WorldAssignment? World { get; private set; }

    /// <summary>
    /// The run starts with the seed's settings: with --resume from the furthest checkpoint any of <paramref name="nodes"/>
    /// offers, keeping its history, otherwise fresh. Returns the replica it goes on from and that checkpoint (null: a fresh start).
    /// </summary>
    public (SourceChoice Source, CheckpointOffer? Checkpoint) Start<TNode>(ActorTrainSettings settings, IEnumerable<Registration<TNode>> nodes) where TNode : notnull
    {
        var (t, sync) = (settings.Training, settings.Sync);
        Plan = new TrainingPlan(t.Epochs, t.BatchSize, t.Seed, t.LogInterval, sync.BucketSizeBytes, sync.NonFiniteGradients == NonFiniteGradientPolicy.Fail,
            sync.TransportChunkSizeBytes, sync.Transport, [], sync.Compression.ToName(), t.AccumulationSteps, sync.BroadcastBuffers);
        if (SourceReplica.FromCheckpoint(nodes) is not { } resumed)
        {
            record.Next("start");
            return (SourceReplica.Fresh, null);
        }
        var (source, checkpoint) = resumed;
        Adopt(checkpoint.History);
        record.Next($"resumed from {checkpoint.File}");
        return (source, checkpoint);
    }

    /// <summary>A coordinator that took over goes on with the plan and the generation the nodes bring back.</summary>
    public void TakeOver(NodeRejoin rejoin)
    {
        Plan = rejoin.Plan;
        Generation = rejoin.Generation;
    }

    /// <summary>A run that goes on keeps its history; its generations are not numbered again.</summary>
    public void Adopt(RunHistory history) => Generation = Math.Max(Generation, record.Adopt(history));

    /// <summary>A node of a lost coordinator's world came back with the run's history: it is kept unless empty or shorter than the one held.</summary>
    public void Rejoined(NodeRejoin rejoin)
    {
        var generations = rejoin.History.Generations.Length;
        if (generations >= record.Generations.Count && generations > 0) Adopt(rejoin.History);
    }

    /// <summary>
    /// The next generation (numbered after the last, and at least <paramref name="atLeast"/>), ranked as
    /// <paramref name="ranked"/> and going on from <paramref name="source"/>, with a fresh data-plane token.
    /// Every node of it is then waited for (<see cref="Ready"/>).
    /// </summary>
    public WorldAssignment Form<TNode>(RankedWorld<TNode> ranked, SourceChoice source, long atLeast) where TNode : notnull
    {
        Generation = Math.Max(Generation + 1, atLeast);
        var plan = Plan! with { DataPlaneToken = RandomNumberGenerator.GetBytes(32) };
        World = new WorldAssignment(Generation, ranked.Nodes, ranked.WorldSize, plan, source.Resume with { SourceRank = ranked.SourceRank }, record.History());
        Await(World.Nodes.Select(n => n.NodeName));
        return World;
    }

    /// <summary>A node of the generation has set up its ring; true once every node has.</summary>
    public bool Ready(NodeReady ready) => ready.Generation == Generation && Arrived(ready.NodeName);

    /// <summary>The epoch a generation that has just started runs first; null when its source replica had finished them all.</summary>
    public int? FirstEpoch()
    {
        var resumed = World!.Resume.Position;
        var first = resumed.EpochFinished ? resumed.Epoch + 1 : resumed.Epoch;
        return first <= World.Plan.Epochs ? first : null;
    }

    /// <summary>The epoch after the one that ended; null when it was the last.</summary>
    public int? NextEpoch() => Epoch < World!.Plan.Epochs ? Epoch + 1 : null;

    /// <summary>The generation runs <paramref name="epoch"/>: reports of an earlier one no longer count.</summary>
    public void Begin(int epoch)
    {
        Epoch = epoch;
        record.ClearTally();
    }

    /// <summary>Takes a node's report of the running epoch; once all <paramref name="nodes"/> have reported, the epoch they made.</summary>
    public EpochRecord? Completed(EpochCompleted e, int nodes) =>
        e.Generation == Generation && e.Epoch == Epoch ? record.Tally(e, nodes) : null;

    /// <summary>
    /// A replica produced non-finite gradient values: the step was skipped on every replica, which is worth a warning;
    /// under actortrain.sync.non-finite-gradients = fail the run ends.
    /// </summary>
    public Consequence NonFinite(NonFiniteGradientReported n)
    {
        var next = World?.Plan.FailOnNonFinite == true
            ? Consequence.EndRun(ExitCodes.NonFiniteGradient, $"rank {n.Rank} on node {n.NodeName} produced a non-finite gradient at step {n.Step} (actortrain.sync.non-finite-gradients = fail)")
            : Consequence.None;
        return next with { Warnings = [$"Rank {n.Rank} on node {n.NodeName} produced {n.NonFiniteCount} non-finite gradient value(s) at step {n.Step}; the step was skipped on every replica"] };
    }

    /// <summary>Training is over: each of <paramref name="nodes"/> is to hand in its final state.</summary>
    public void AwaitFinal(IEnumerable<string> nodes)
    {
        _finished.Clear();
        Await(nodes);
    }

    /// <summary>Takes a node's final state; true once every node waited for has sent one.</summary>
    public bool Finished(NodeFinished f)
    {
        if (f.Generation != Generation) return false;
        _finished.RemoveAll(x => x.NodeName == f.NodeName);
        _finished.Add(f);
        return Arrived(f.NodeName);
    }

    /// <summary>A node was lost while the run was finishing: true when the others' final states now complete it.</summary>
    public bool Excuse(string node) => Arrived(node) && _finished.Count > 0;

    /// <summary>The report of the finished run, from the final states handed in.</summary>
    public RunReport Report(string jobId) => record.Report(jobId, World!, _finished);

    private void Await(IEnumerable<string> nodes)
    {
        _pending.Clear();
        _pending.UnionWith(nodes);
    }

    private bool Arrived(string node)
    {
        _pending.Remove(node);
        return _pending.Count == 0;
    }
}
