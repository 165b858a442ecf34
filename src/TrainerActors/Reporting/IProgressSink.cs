namespace ActorTrain.TrainerActors.Reporting;

/// <summary>
/// Where progress events go: plain lines, protocol lines for a parent process, or a live bar.
/// Report may be called from any thread; Dispose flushes and ends any live display.
/// </summary>
public interface IProgressSink : IDisposable
{
    void Report(ProgressEvent e);
}
