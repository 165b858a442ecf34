using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Jobs;
using Akka.Actor;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// A node's trainers, one per device: spawned and watched by the node actor, told together, and
/// their answers gathered by local rank. Used from the node actor's thread only.
/// </summary>
internal sealed class NodeTrainers
{
    private readonly List<IActorRef> _refs = [];
    private readonly Dictionary<int, TrainerReady> _ready = [];
    private readonly Dictionary<int, object> _answers = [];
    private readonly Dictionary<int, TrainerHaltState> _halted = [];

    public int Count => _refs.Count;

    public IActorRef this[int localRank] => _refs[localRank];

    /// <summary>Where each trainer is in the current generation (written by its thread, read by the node).</summary>
    public TrainerProgress[] Progress { get; private set; } = [];

    /// <summary>The model fingerprint all trainers built; valid once <see cref="Ready"/> said so.</summary>
    public string Fingerprint => _ready[0].Fingerprint;

    /// <summary>The trainers' devices by local rank.</summary>
    public string[] Devices => _ready.Values.OrderBy(r => r.LocalRank).Select(r => r.Device).ToArray();

    /// <summary>Spawns one trainer per device of <paramref name="devices"/>, watched by <paramref name="context"/>'s actor.</summary>
    public void Spawn(IUntypedActorContext context, TrainingJob job, NodeDevices devices, ActorTrainSettings settings)
    {
        // Until the world tells how many trainers share this machine, assume only this node's.
        var threads = settings.Node.EffectiveIntraOpThreads(devices.Devices.Count);
        for (var i = 0; i < devices.Devices.Count; i++)
        {
            var props = TrainerActor.Props(job, new TrainerSetup(i, devices.Devices[i], threads, settings.Sync.BucketSizeBytes, settings.Training.Seed,
                settings.Sync.OverlapBackward, settings.Training.WarmUp ? settings.Training.BatchSize : 0));
            _refs.Add(context.Watch(context.ActorOf(props, $"trainer-{i}")));
        }
    }

    public bool Contains(IActorRef actor) => _refs.Contains(actor);

    public void TellAll(object message)
    {
        foreach (var t in _refs) t.Tell(message);
    }

    /// <summary>Records that a trainer has built its replica; true once every trainer has.</summary>
    public bool AllReady(TrainerReady ready)
    {
        _ready[ready.LocalRank] = ready;
        return _ready.Count == Count;
    }

    /// <summary>Whether every trainer built the same model (its fingerprint).</summary>
    public bool SameModel => _ready.Values.Select(x => x.Fingerprint).Distinct().Count() == 1;

    /// <summary>Progress counters for a generation in which this node's first global rank is <paramref name="firstRank"/>.</summary>
    public void StartProgress(int firstRank) =>
        Progress = Enumerable.Range(0, Count).Select(i => new TrainerProgress(firstRank + i)).ToArray();

    /// <summary>Every trainer's answer by local rank, once the last one is in; null until then.</summary>
    public List<T>? Collect<T>(int localRank, T answer) where T : notnull
    {
        _answers[localRank] = answer;
        return _answers.Count < Count ? null : _answers.OrderBy(x => x.Key).Select(x => (T)x.Value).ToList();
    }

    /// <summary>Forgets the answers gathered so far (a new question goes out).</summary>
    public void ClearAnswers() => _answers.Clear();

    /// <summary>Tells every trainer <paramref name="message"/>, collecting their answers afresh.</summary>
    public void Request(object message)
    {
        ClearAnswers();
        TellAll(message);
    }

    /// <summary>Where each trainer is now.</summary>
    public RankProgress[] Snapshot() => Progress.Select(p => p.Snapshot()).ToArray();

    /// <summary>The node's epoch report once every trainer has finished the epoch; null until then.</summary>
    public EpochCompleted? EpochDone(TrainerEpochDone done, long generation, string nodeName)
    {
        if (Collect(done.LocalRank, done) is not { } all) return null;
        // Each trainer's loss is already the mean over all replicas; report one trainer's.
        var first = all[0];
        return new EpochCompleted(generation, nodeName, done.Epoch, all.Max(x => x.Steps),
            first.LossSum, first.LossCount, all.Max(x => x.SkippedSteps), all.Select(x => x.Metrics).FirstOrDefault(m => m.Count > 0) ?? []);
    }

    /// <summary>The node's final report once every trainer has finished; null until then.</summary>
    public NodeFinished? Finished(TrainerFinished finished, long generation, string nodeName) =>
        Collect(finished.LocalRank, finished) is not { } all ? null
            : new NodeFinished(generation, nodeName, all.Select(x => x.Summary).ToArray(),
                all.Select(x => x.ModelPath).FirstOrDefault(p => p is not null), all.SelectMany(x => x.LossCurve).ToArray());

    /// <summary>Forgets the states of an earlier halt (the trainers are told to stop for another generation).</summary>
    public void ClearHalted() => _halted.Clear();

    /// <summary>Whether every trainer has stopped and reported its state.</summary>
    public bool AllHalted => _halted.Count == Count;

    /// <summary>Every trainer's state by local rank once the last one has stopped; null until then.</summary>
    public TrainerHaltState[]? Halted(TrainerHalted halted)
    {
        _halted[halted.LocalRank] = halted.State;
        return AllHalted ? _halted.OrderBy(x => x.Key).Select(x => x.Value).ToArray() : null;
    }
}
