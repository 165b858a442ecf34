namespace ActorTrain.TrainerActors.Reporting;

/// <summary>
/// Prints only the human lines (loss lines, epoch summaries, messages) exactly as given, one per
/// line; step events print nothing. For redirected output and <c>--no-progress</c>.
/// </summary>
internal sealed class PlainProgressSink : IProgressSink
{
    private readonly TextWriter _writer;
    private readonly object _gate = new();

    /// <param name="writer">Not disposed by this sink.</param>
    public PlainProgressSink(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _writer = writer;
    }

    public void Report(ProgressEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (!ProgressKinds.HasLine(e.Kind) || e.Text is null)
        {
            return;
        }

        lock (_gate)
        {
            _writer.WriteLine(e.Text);
            _writer.Flush();
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _writer.Flush();
        }
    }
}
