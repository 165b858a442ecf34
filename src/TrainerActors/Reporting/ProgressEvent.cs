namespace ActorTrain.TrainerActors.Reporting;

/// <summary>
/// What rank 0's trainer reports about the run, for a display to render (see <see cref="IProgressSink"/>).
/// </summary>
/// <param name="Kind">One of <see cref="ProgressKinds"/>.</param>
/// <param name="Epoch">The current epoch, 1-based.</param>
/// <param name="Epochs">Epochs in the run.</param>
/// <param name="Step">Steps done in the current epoch (1..<paramref name="StepsPerEpoch"/>; 0 at its start).</param>
/// <param name="StepsPerEpoch">Steps in one epoch (0 when not known).</param>
/// <param name="Loss">The latest training loss (mean over the replicas); NaN when not known.</param>
/// <param name="SamplesPerSecond">Training throughput over all replicas; 0 or NaN when not known.</param>
/// <param name="Text">The human line of a loss-line, epoch-end or message event; null otherwise.</param>
public sealed record ProgressEvent(
    string Kind,
    int Epoch,
    int Epochs,
    long Step,
    long StepsPerEpoch,
    double Loss,
    double SamplesPerSecond,
    string? Text)
{
    /// <summary>A plain line to show (above the bar when one is live).</summary>
    public static ProgressEvent Line(string text) => new(ProgressKinds.Message, 0, 0, 0, 0, double.NaN, 0, text);
}

/// <summary>The values of <see cref="ProgressEvent.Kind"/>.</summary>
public static class ProgressKinds
{
    /// <summary>An epoch begins (Step 0).</summary>
    public const string EpochStart = "epoch-start";

    /// <summary>A step finished; no text.</summary>
    public const string Step = "step";

    /// <summary>The periodic <c>[epoch, batch] loss: x.xxx</c> line, in Text.</summary>
    public const string LossLine = "loss-line";

    /// <summary>An epoch finished; Text holds its summary (e.g. the accuracy line), or null.</summary>
    public const string EpochEnd = "epoch-end";

    /// <summary>Any other line for the operator, in Text.</summary>
    public const string Message = "message";

    /// <summary>Whether an event of this kind carries a line for the operator (in Text).</summary>
    public static bool HasLine(string kind) => kind is LossLine or EpochEnd or Message;
}
