namespace ActorTrain.TrainerActors.Actors;

/// <summary>Host → node actor: the process was asked to stop (SIGTERM); leave the run at a step boundary.</summary>
internal sealed class DrainNode
{
    public static readonly DrainNode Instance = new();
    private DrainNode() { }
}
