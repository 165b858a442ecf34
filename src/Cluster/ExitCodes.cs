namespace ActorTrain.Cluster;

/// <summary>
/// Every exit code a node process (or the <c>local</c> launcher, or <c>status</c>) ends with, in
/// one place; the README's exit-code table lists the same. <see cref="Protocol.EndRun"/> carries
/// one of these from the coordinator to the nodes.
/// </summary>
public static class ExitCodes
{
    /// <summary>The run completed (or this node left it cleanly).</summary>
    public const int Done = 0;

    /// <summary>A node failed (a trainer threw, or a node could not go on); <c>status</c>: no coordinator answered.</summary>
    public const int NodeFailed = 1;

    /// <summary>Bad configuration or usage, refused by the coordinator, or a checkpoint of another job or model.</summary>
    public const int BadConfiguration = 2;

    /// <summary>The run could not go on after a node was lost, or this node was left out, removed or on the minority side.</summary>
    public const int NodeLost = 3;

    /// <summary>A non-finite gradient under <c>actortrain.sync.non-finite-gradients = fail</c>.</summary>
    public const int NonFiniteGradient = 4;

    /// <summary>Training completed but run-report.json could not be written.</summary>
    public const int ReportNotWritten = 5;

    /// <summary>The replicas' parameter checksums differ at the end of the run.</summary>
    public const int ReplicasDiffer = 6;

    /// <summary>Interrupted: Ctrl+C, or the <c>local</c> launcher died.</summary>
    public const int Interrupted = 130;

    /// <summary>Terminated by SIGTERM (the node leaves the run and the cluster first).</summary>
    public const int Terminated = 143;
}
