using ActorTrain.Cluster.Serialization;
using ActorTrain.Sync.Transport.Tcp;
using ActorTrain.TrainerActors.Checkpoints;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>
/// What a node compiles before the run needs it, in the background while its ActorSystem starts and
/// joins the cluster (which takes seconds): the wire messages' formatters and, on a node that trains,
/// the TCP data plane and the checkpoint format (its first write took 88 ms against 7 ms for the next,
/// mostly the JSON header's serializer). The trainers warm their own forward and backward up before
/// registering.
/// A failure costs only time at the first step; it is logged at DEBUG.
/// </summary>
internal static class NodeWarmUp
{
    public static Task<IReadOnlyList<string>> Start(bool trains) => Task.Run(async () =>
    {
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
                await TcpWarmUp.RunAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                problems.Add($"data plane: {e.GetBaseException().Message}");
            }
        }
        return (IReadOnlyList<string>)problems;
    });

    /// <summary>A checkpoint of a few bytes, written to memory.</summary>
    private static void WriteCheckpoint()
    {
        using var memory = new MemoryStream();
        CheckpointFormat.Write(memory, new TrainingState
        {
            JobId = "warm-up",
            ModelFingerprint = "warm-up",
            Epoch = 1,
            SamplesConsumedInEpoch = 0,
            GlobalStep = 0,
            WorldSize = 1,
            Seed = 1,
            CreatedUtc = DateTime.UtcNow,
            Sections = new Dictionary<string, byte[]> { [TrainingState.ModelSection] = [1], [TrainingState.OptimizerSection] = [2] },
        });
    }

    /// <summary>Logs what the warm-up could not do, once it is over.</summary>
    public static void ReportTo(Task<IReadOnlyList<string>> warmUp, ActorSystem system) =>
        warmUp.ContinueWith(t =>
        {
            var problems = t.IsCompletedSuccessfully ? t.Result : [t.Exception?.GetBaseException().Message ?? "cancelled"];
            if (problems.Count > 0) system.Log.Debug("Warm-up left out: {0}", string.Join("; ", problems));
        }, TaskScheduler.Default);
}
