namespace ActorTrain.TrainerActors.Reporting;

/// <summary>A sink that writes at most one line per event to a text writer, flushed at once.</summary>
internal abstract class LineProgressSink : IProgressSink
{
    private readonly TextWriter _writer;
    private readonly object _gate = new();

    /// <param name="writer">Not disposed by this sink.</param>
    protected LineProgressSink(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _writer = writer;
    }

    /// <summary>The line that <paramref name="e"/> prints; null for none.</summary>
    protected abstract string? LineFor(ProgressEvent e);

    public void Report(ProgressEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (LineFor(e) is not { } line) return;
        lock (_gate)
        {
            _writer.WriteLine(line);
            _writer.Flush();
        }
    }

    public void Dispose()
    {
        lock (_gate) _writer.Flush();
    }
}

/// <summary>
/// Prints only the human lines (loss lines, epoch summaries, messages) exactly as given, one per
/// line; step events print nothing. For redirected output and <c>--no-progress</c>.
/// </summary>
internal sealed class PlainProgressSink(TextWriter writer) : LineProgressSink(writer)
{
    protected override string? LineFor(ProgressEvent e) => ProgressKinds.HasLine(e.Kind) ? e.Text : null;
}

/// <summary>
/// Writes every event as a <see cref="ProgressProtocol"/> line, for a node whose parent (the
/// local launcher) renders the progress.
/// </summary>
internal sealed class ProtocolProgressSink(TextWriter writer) : LineProgressSink(writer)
{
    protected override string? LineFor(ProgressEvent e) => ProgressProtocol.Encode(e);
}
