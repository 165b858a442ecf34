using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Reporting;
using Akka.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>
/// A job small enough for actor specs: a 4 → 2 linear classifier on 64 generated samples (class
/// = index parity), so one epoch at batch 8 on one rank is 8 steps of a few microseconds; with
/// the callbacks given.
/// </summary>
internal sealed class TinyJob(params TrainingCallback[] callbacks) : TrainingJob
{
    public const int Samples = 64;

    public override string Name => "tiny";

    public override nn.Module<Tensor, Tensor> CreateModel() => nn.Linear(4, 2);

    public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) => optim.SGD(model.parameters(), 0.1);

    public override IBatchSource LoadTrainingData() => new Data(Samples);

    public override IBatchSource? LoadTestData() => new Data(16);

    public override IReadOnlyList<TrainingCallback> CreateCallbacks() => callbacks;

    private sealed class Data(int count) : IBatchSource
    {
        public int Count => count;

        public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
        {
            var x = new float[indices.Length * 4];
            var y = new long[indices.Length];
            for (var i = 0; i < indices.Length; i++)
            {
                y[i] = indices[i] % 2;
                for (var j = 0; j < 4; j++) x[i * 4 + j] = (float)Math.Sin(indices[i] * (j + 1)) + y[i];
            }
            return (torch.tensor(x, [indices.Length, 4]).to(device), torch.tensor(y).to(device));
        }
    }
}

/// <summary>Progress events as a trainer reports them, kept for assertions.</summary>
internal sealed class RecordingSink : IProgressSink
{
    private readonly List<ProgressEvent> _events = [];

    public IReadOnlyList<ProgressEvent> Events
    {
        get { lock (_events) return _events.ToArray(); }
    }

    public void Report(ProgressEvent e)
    {
        lock (_events) _events.Add(e);
    }

    public void Dispose() { }
}

/// <summary>Configuration of the actor specs: a cluster-capable system on 127.0.0.1 with ActorTrain's defaults.</summary>
internal static class ActorSpecConfig
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public static Config Node(string outDir, string hocon = "") =>
        ConfigurationFactory.ParseString($$"""
            akka.actor.provider = cluster
            akka.remote.dot-netty.tcp.hostname = "127.0.0.1"
            akka.remote.dot-netty.tcp.port = 0
            akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
            actortrain.job-id = tiny
            actortrain.node-name = node-a
            actortrain.node.trainers-per-node = 1
            actortrain.node.intra-op-threads = 1
            actortrain.sync.tcp-port = 0
            actortrain.training.out-dir = "{{outDir}}"
            actortrain.checkpoint.dir = "{{Path.Combine(outDir, "checkpoints")}}"
            {{hocon}}
            """).WithFallback(ActorTrainSettings.DefaultConfig());
}
