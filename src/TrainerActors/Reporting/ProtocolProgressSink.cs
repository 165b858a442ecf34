namespace ActorTrain.TrainerActors.Reporting;

/// <summary>
/// Writes every event as a <see cref="ProgressProtocol"/> line, for a node whose parent (the
/// local launcher) renders the progress.
/// </summary>
internal sealed class ProtocolProgressSink : IProgressSink
{
    private readonly TextWriter _writer;
    private readonly object _gate = new();

    /// <param name="writer">Not disposed by this sink.</param>
    public ProtocolProgressSink(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _writer = writer;
    }

    public void Report(ProgressEvent e)
    {
        var line = ProgressProtocol.Encode(e);
        lock (_gate)
        {
            _writer.WriteLine(line);
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
