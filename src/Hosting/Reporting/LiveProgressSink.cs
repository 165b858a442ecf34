using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Spectre.Console;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.Hosting;

/// <summary>
/// A live progress bar for the current epoch (epoch e/E, step s/S, percentage and the epoch's
/// remaining time; below it samples/s, the latest loss and the run's remaining time), with the loss lines,
/// epoch summaries and messages printed above it so they stay in the scrollback.
/// </summary>
/// <remarks>
/// One background thread owns the display: <see cref="Report"/> only queues the event (a run of
/// step events collapses to the newest), and that thread applies the queue, prints the lines and
/// redraws. Spectre.Console moves the cursor to the top of the live area before any write that goes
/// through the console, so a line written there lands above the bar and the bar is redrawn below it.
/// Output written to <see cref="Console"/> directly, bypassing Spectre, would garble the display
/// while it is live: send such lines as <see cref="ProgressKinds.Message"/> events instead.
/// Dispose prints the final state of the bar and shows the cursor again (so does SIGINT, SIGTERM,
/// SIGQUIT or process exit, without cancelling them); events reported after that print their
/// lines plainly. Making the terminal narrower than the live area (about 65 columns) while it is
/// shown makes Spectre.Console clear the screen and scrollback.
/// </remarks>
internal sealed class LiveProgressSink : IProgressSink
{
    private static readonly TimeSpan DefaultRefreshInterval = TimeSpan.FromMilliseconds(150);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan SignalStopTimeout = TimeSpan.FromSeconds(1);

    // A narrow live area survives the terminal being made narrower: Spectre clears the screen and
    // the scrollback when the terminal becomes narrower than what it last drew.
    private const int MaxBarWidth = 24;

    private readonly IAnsiConsole _console;
    private readonly TimeSpan _refreshInterval;
    private readonly Thread _thread;
    private readonly EventHandler _onProcessExit;
    private readonly List<PosixSignalRegistration> _signals = [];

    // Guards the queue and the flags below; Monitor.Pulse on it wakes the display thread.
    private readonly object _gate = new();
    private readonly List<ProgressEvent> _pending = [];
    private bool _stopRequested;
    private bool _closed;
    private int _disposed;

    // Touched by the display thread only.
    private readonly LiveState _state = new();
    private readonly ProgressBarColumn _bar = new();
    private ProgressTask? _task;

    /// <summary>Renders on <see cref="AnsiConsole.Console"/>.</summary>
    public LiveProgressSink()
        : this(AnsiConsole.Console)
    {
    }

    /// <param name="console">The console to render on (an interactive ANSI one for a live bar).</param>
    /// <param name="refreshInterval">How often the bar is redrawn when no line arrives (default 150 ms).</param>
    public LiveProgressSink(IAnsiConsole console, TimeSpan? refreshInterval = null)
    {
        ArgumentNullException.ThrowIfNull(console);
        _console = console;
        _refreshInterval = refreshInterval ?? DefaultRefreshInterval;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_refreshInterval, TimeSpan.Zero, nameof(refreshInterval));

        _thread = new Thread(RunDisplay) { IsBackground = true, Name = "actortrain-progress" };
        _thread.Start();

        // A process that ends without disposing the sink, or is interrupted, would otherwise leave
        // the cursor hidden and the bar half drawn. The handlers do not cancel the signal.
        _onProcessExit = (_, _) => Stop(StopTimeout);
        AppDomain.CurrentDomain.ProcessExit += _onProcessExit;
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGQUIT })
        {
            try
            {
                _signals.Add(PosixSignalRegistration.Create(signal, _ => Stop(SignalStopTimeout)));
            }
            catch (PlatformNotSupportedException)
            {
                // Not on this platform: Dispose alone restores the console.
            }
        }
    }

    /// <summary>The error that ended the live display early, if any (its lines were then printed plainly).</summary>
    public Exception? DisplayFailure { get; private set; }

    public void Report(ProgressEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        lock (_gate)
        {
            if (_closed)
            {
                WriteLinePlain(e);
                return;
            }

            // Only the newest position matters to the bar: a step replaces a step queued just before it.
            if (e.Kind == ProgressKinds.Step && _pending.Count > 0 && _pending[^1].Kind == ProgressKinds.Step)
            {
                _pending[^1] = e;
                return;
            }

            _pending.Add(e);

            // Lines and epoch boundaries are shown at once; steps wait for the next redraw.
            if (e.Kind != ProgressKinds.Step)
            {
                Monitor.Pulse(_gate);
            }
        }
    }

    /// <summary>Applies what is queued, prints the bar's final state and gives the console back.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        AppDomain.CurrentDomain.ProcessExit -= _onProcessExit;
        foreach (var registration in _signals)
        {
            registration.Dispose();
        }

        Stop(StopTimeout);
    }

    private void Stop(TimeSpan timeout)
    {
        lock (_gate)
        {
            _stopRequested = true;
            Monitor.Pulse(_gate);
        }

        if (Thread.CurrentThread != _thread)
        {
            _thread.Join(timeout);
        }
    }

    private void RunDisplay()
    {
        try
        {
            var progress = new Progress(_console)
            {
                AutoRefresh = false, // this thread redraws; nothing else touches the display
                AutoClear = false,
                HideCompleted = false,
            };

            // The bar's row holds what has a fixed width; throughput, loss and the run's remaining
            // time go on a line of their own below it, so the row fits an 80-column terminal.
            progress.Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, _bar, new PercentageColumn(), new RemainingTimeColumn());
            progress.UseRenderHook((table, _) => _task is null ? table : new Rows(table, new Markup(_state.StatsMarkup(Separator))));
            progress.Start(Pump);
        }
        catch (Exception ex)
        {
            DisplayFailure = ex;
        }
        finally
        {
            lock (_gate)
            {
                _closed = true;

                // Whatever the display did not get to (it failed, or arrived while it stopped) still prints.
                foreach (var e in _pending)
                {
                    WriteLinePlain(e);
                }

                _pending.Clear();
            }
        }
    }

    private void Pump(ProgressContext context)
    {
        while (true)
        {
            ProgressEvent[] batch;
            bool stop;
            lock (_gate)
            {
                if (_pending.Count == 0 && !_stopRequested)
                {
                    Monitor.Wait(_gate, _refreshInterval);
                }

                batch = [.. _pending];
                _pending.Clear();
                stop = _stopRequested;
            }

            for (var i = 0; i < batch.Length; i++)
            {
                try
                {
                    Apply(context, batch[i]);
                }
                catch
                {
                    // Hand what is left back, so that its lines are still printed plainly.
                    lock (_gate)
                    {
                        _pending.InsertRange(0, batch[i..]);
                    }

                    throw;
                }
            }

            FitBarToWidth();
            context.Refresh();
            if (stop)
            {
                return;
            }
        }
    }

    private void Apply(ProgressContext context, ProgressEvent e)
    {
        switch (e.Kind)
        {
            case ProgressKinds.EpochStart:
                Track(context, e, newEpoch: true, epochDone: false);
                break;
            case ProgressKinds.Step:
            case ProgressKinds.LossLine:
                Track(context, e, newEpoch: false, epochDone: false);
                break;
            case ProgressKinds.EpochEnd:
                Track(context, e, newEpoch: false, epochDone: true);
                break;
        }

        if (ProgressKinds.HasLine(e.Kind) && e.Text is not null)
        {
            // One write per line: each lands on the blank line above the bar, which is then redrawn.
            _console.Write(new Text(e.Text + Environment.NewLine));
        }
    }

    /// <summary>Moves the bar of the event's epoch, created (in place of the previous one) when it is a new epoch.</summary>
    private void Track(ProgressContext context, ProgressEvent e, bool newEpoch, bool epochDone)
    {
        if (_task is null || newEpoch || e.Epoch != _state.Epoch)
        {
            if (_task is not null)
            {
                context.RemoveTask(_task);
            }

            _task = context.AddTask(Describe(e.Epoch, e.Epochs, 0, e.StepsPerEpoch), autoStart: true, maxValue: Math.Max(1, e.StepsPerEpoch));
            _state.StartEpoch(e.Epoch, e.Epochs, e.StepsPerEpoch);
        }

        _state.Observe(e, epochDone);

        // Without the epoch's length the bar cannot show a fraction; it pulses instead.
        _task.IsIndeterminate = _state.StepsPerEpoch <= 0;
        if (_state.StepsPerEpoch > 0)
        {
            _task.MaxValue = _state.StepsPerEpoch;
            _task.Value = Math.Min(_state.Step, _state.StepsPerEpoch);
        }
        else if (epochDone)
        {
            _task.Value = _task.MaxValue;
        }

        _task.Description = Describe(_state.Epoch, _state.Epochs, _state.Step, _state.StepsPerEpoch);
    }

    private string Describe(int epoch, int epochs, long step, long stepsPerEpoch)
    {
        var total = stepsPerEpoch > 0 ? stepsPerEpoch.ToString(CultureInfo.InvariantCulture) : "?";
        var done = step.ToString(CultureInfo.InvariantCulture).PadLeft(total.Length);
        return string.Create(CultureInfo.InvariantCulture, $"epoch {epoch}/{epochs} {Separator} step {done}/{total}");
    }

    private string Separator => _console.Profile.Capabilities.Unicode ? "·" : "-";

    /// <summary>The bar takes what the row leaves of the console's width (it may have been resized), 8 to <see cref="MaxBarWidth"/> cells.</summary>
    private void FitBarToWidth()
    {
        // description, then percentage (4) and remaining time (8), one cell of padding after each column but the last
        var others = (_task?.Description.Length ?? 24) + 1 + 1 + 4 + 1 + 8;
        _bar.Width = Math.Clamp(_console.Profile.Width - others - 1, 8, MaxBarWidth);
    }

    private void WriteLinePlain(ProgressEvent e)
    {
        if (!ProgressKinds.HasLine(e.Kind) || e.Text is null)
        {
            return;
        }

        try
        {
            _console.Write(new Text(e.Text + Environment.NewLine));
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            // The console is gone (process ending); nothing left to show the line on.
        }
    }

    /// <summary>Where the run is, the latest throughput and loss, and the run's pace for its remaining time.</summary>
    private sealed class LiveState
    {
        private long _firstStepTimestamp;
        private long _firstStepDone;
        private long _lastDone;
        private long _totalSteps;

        public int Epoch { get; private set; }

        public int Epochs { get; private set; }

        /// <summary>Steps done in the current epoch.</summary>
        public long Step { get; private set; }

        /// <summary>0 when not known.</summary>
        public long StepsPerEpoch { get; private set; }

        public double Loss { get; private set; } = double.NaN;

        public double SamplesPerSecond { get; private set; } = double.NaN;

        public void StartEpoch(int epoch, int epochs, long stepsPerEpoch)
        {
            Epoch = epoch;
            Epochs = epochs;
            Step = 0;
            StepsPerEpoch = Math.Max(0, stepsPerEpoch);
        }

        public void Observe(ProgressEvent e, bool epochDone)
        {
            Epochs = e.Epochs > 0 ? e.Epochs : Epochs;
            StepsPerEpoch = e.StepsPerEpoch > 0 ? e.StepsPerEpoch : StepsPerEpoch;

            // Steps only move forward within an epoch; an event without a step leaves it where it is.
            Step = Math.Max(Step, e.Step);
            if (epochDone && StepsPerEpoch > 0)
            {
                Step = Math.Max(Step, StepsPerEpoch);
            }

            if (double.IsFinite(e.Loss))
            {
                Loss = e.Loss;
            }

            if (double.IsFinite(e.SamplesPerSecond) && e.SamplesPerSecond > 0)
            {
                SamplesPerSecond = e.SamplesPerSecond;
            }

            if (StepsPerEpoch <= 0 || Epochs <= 0 || Epoch <= 0)
            {
                return;
            }

            _totalSteps = (long)Epochs * StepsPerEpoch;
            var done = ((long)(Epoch - 1) * StepsPerEpoch) + Math.Min(Step, StepsPerEpoch);
            if (_firstStepTimestamp == 0 && Step > 0)
            {
                _firstStepTimestamp = Stopwatch.GetTimestamp();
                _firstStepDone = done;
            }

            _lastDone = Math.Max(_lastDone, done);
        }

        /// <summary>From the pace since the first step seen, evaluation pauses included.</summary>
        public TimeSpan? RunRemaining()
        {
            var stepsTimed = _lastDone - _firstStepDone;
            if (_firstStepTimestamp == 0 || stepsTimed <= 0 || _totalSteps <= 0)
            {
                return null;
            }

            var perStep = Stopwatch.GetElapsedTime(_firstStepTimestamp).TotalSeconds / stepsTimed;
            var seconds = perStep * Math.Max(0, _totalSteps - _lastDone);
            return seconds < TimeSpan.MaxValue.TotalSeconds / 2 ? TimeSpan.FromSeconds(Math.Round(seconds)) : null;
        }

        /// <summary>E.g. <c>3,200 samples/s · loss 0.163 · run 2m05s left</c>, with "-" for what is not known yet.</summary>
        public string StatsMarkup(string separator)
        {
            var rate = double.IsFinite(SamplesPerSecond) ? SamplesPerSecond.ToString("N0", CultureInfo.InvariantCulture) : "-";
            var loss = double.IsFinite(Loss) ? Loss.ToString("0.000", CultureInfo.InvariantCulture) : "-";
            var eta = RunRemaining() is { } r ? FormatDuration(r) : "-";
            return string.Create(
                CultureInfo.InvariantCulture,
                $"[green]{rate}[/] samples/s {separator} loss [yellow]{loss}[/] {separator} run [blue]{eta}[/] left");
        }

        private static string FormatDuration(TimeSpan t) =>
            t.TotalHours >= 1
                ? string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalHours}h{t.Minutes:00}m")
                : string.Create(CultureInfo.InvariantCulture, $"{t.Minutes}m{t.Seconds:00}s");
    }
}
