using System.Diagnostics;
using ActorTrain.Hosting;
using ActorTrain.TrainerActors.Reporting;
using Spectre.Console;

namespace ActorTrain.TrainerActors.Tests.Reporting;

public sealed class ProgressSinkTests
{
    private const string Loss20 = "[1,    20] loss: 2.271";
    private const string Loss40 = "[1,    40] loss: 1.873";
    private const string Accuracy1 = "epoch 1: test accuracy 0.8512 on 1000 held-out samples";
    private const string Loss2 = "[2,    20] loss: 0.512";
    private const string Accuracy2 = "epoch 2: test accuracy 0.9312 on 1000 held-out samples";
    private const string Done = "Run complete: 80 steps, test accuracy 0.9312";

    /// <summary>Two epochs of 40 steps as rank 0 reports them: a loss line every 20 steps, the accuracy at each epoch's end.</summary>
    private static List<ProgressEvent> Run()
    {
        var events = new List<ProgressEvent>();
        for (var epoch = 1; epoch <= 2; epoch++)
        {
            events.Add(new(ProgressKinds.EpochStart, epoch, 2, 0, 40, double.NaN, 0, null));
            for (var step = 1; step <= 40; step++)
            {
                var loss = 2.5 / ((epoch * 40) + step);
                events.Add(new(ProgressKinds.Step, epoch, 2, step, 40, loss, 1000 + step, null));
                if (step % 20 == 0 && (epoch == 1 || step == 20))
                {
                    var text = epoch == 1 ? (step == 20 ? Loss20 : Loss40) : Loss2;
                    events.Add(new(ProgressKinds.LossLine, epoch, 2, step, 40, loss, 1000 + step, text));
                }
            }

            events.Add(new(ProgressKinds.EpochEnd, epoch, 2, 40, 40, double.NaN, 0, epoch == 1 ? Accuracy1 : Accuracy2));
        }

        events.Add(new(ProgressKinds.Message, 2, 2, 40, 40, double.NaN, 0, Done));
        return events;
    }

    private static string[] Lines(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();

    [Fact]
    public void Plain_sink_prints_exactly_the_loss_accuracy_and_message_lines()
    {
        var writer = new StringWriter { NewLine = "\n" };
        using (var sink = new PlainProgressSink(writer))
        {
            foreach (var e in Run())
            {
                sink.Report(e);
            }
        }

        Assert.Equal($"{Loss20}\n{Loss40}\n{Accuracy1}\n{Loss2}\n{Accuracy2}\n{Done}\n", writer.ToString());
    }

    [Fact]
    public void Plain_sink_prints_nothing_for_steps_epoch_starts_or_events_without_text()
    {
        var writer = new StringWriter();
        using (var sink = new PlainProgressSink(writer))
        {
            sink.Report(new(ProgressKinds.EpochStart, 1, 1, 0, 10, double.NaN, 0, "ignored"));
            sink.Report(new(ProgressKinds.Step, 1, 1, 1, 10, 0.5, 10, "ignored"));
            sink.Report(new(ProgressKinds.EpochEnd, 1, 1, 10, 10, 0.5, 10, null));
            sink.Report(new("some-future-kind", 1, 1, 10, 10, 0.5, 10, "ignored"));
        }

        Assert.Equal(string.Empty, writer.ToString());
    }

    [Fact]
    public void Plain_sink_keeps_each_line_whole_when_reported_from_many_threads()
    {
        var writer = new StringWriter { NewLine = "\n" };
        using (var sink = new PlainProgressSink(writer))
        {
            Parallel.For(0, 8, t =>
            {
                for (var i = 0; i < 200; i++)
                {
                    sink.Report(new(ProgressKinds.Message, 1, 1, 0, 0, 0, 0, $"thread {t} line {i}"));
                }
            });
        }

        var lines = Lines(writer.ToString());
        Assert.Equal(1600, lines.Length);
        Assert.Equal(1600, lines.Distinct().Count());
        Assert.All(lines, l => Assert.Matches(@"^thread \d line \d+$", l));
    }

    [Fact]
    public void Protocol_sink_writes_every_event_as_a_protocol_line()
    {
        var events = Run();
        var writer = new StringWriter { NewLine = "\n" };
        using (var sink = new ProtocolProgressSink(writer))
        {
            foreach (var e in events)
            {
                sink.Report(e);
            }
        }

        var decoded = Lines(writer.ToString()).Select(line =>
        {
            Assert.True(ProgressProtocol.TryDecode(line, out var e), line);
            return e!;
        });
        Assert.Equal(events, decoded);
    }

    [Fact]
    public void Protocol_lines_rendered_by_a_plain_sink_give_the_plain_output()
    {
        // What the local launcher does with a node's output: decode the protocol lines, render them.
        var child = new StringWriter { NewLine = "\n" };
        using (var sink = new ProtocolProgressSink(child))
        {
            Run().ForEach(sink.Report);
        }

        var direct = new StringWriter { NewLine = "\n" };
        using (var sink = new PlainProgressSink(direct))
        {
            Run().ForEach(sink.Report);
        }

        var parent = new StringWriter { NewLine = "\n" };
        using (var sink = new PlainProgressSink(parent))
        {
            foreach (var line in Lines(child.ToString()))
            {
                Assert.True(ProgressProtocol.TryDecode(line, out var e));
                sink.Report(e!);
            }
        }

        Assert.Equal(direct.ToString(), parent.ToString());
    }

    private static (IAnsiConsole Console, StringWriter Output) InteractiveTestConsole(int width = 100)
    {
        var output = new StringWriter { NewLine = "\n" };
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(TextWriter.Synchronized(output)),
        });
        console.Profile.Width = width;
        return (console, output);
    }

    [Fact]
    public void Live_sink_prints_each_line_once_above_the_bar_and_leaves_the_final_state()
    {
        var (console, output) = InteractiveTestConsole();
        var sink = new LiveProgressSink(console, TimeSpan.FromMilliseconds(10));
        foreach (var e in Run())
        {
            sink.Report(e);
        }

        var stopwatch = Stopwatch.StartNew();
        sink.Dispose();
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(4), $"Dispose took {stopwatch.Elapsed}");
        Assert.Null(sink.DisplayFailure);

        var text = output.ToString();
        string[] lines = [Loss20, Loss40, Accuracy1, Loss2, Accuracy2, Done];
        var positions = lines.Select(line =>
        {
            var at = text.IndexOf(line, StringComparison.Ordinal);
            Assert.True(at >= 0, $"missing: {line}");
            Assert.Equal(at, text.LastIndexOf(line, StringComparison.Ordinal));
            return at;
        }).ToList();
        Assert.Equal(positions.Order(), positions);

        // The last thing drawn is the finished bar of epoch 2, with the latest throughput and loss.
        var finalBar = text.LastIndexOf("epoch 2/2 · step 40/40", StringComparison.Ordinal);
        Assert.True(finalBar > positions[^1], "the final bar is drawn after the last line");
        Assert.Contains("100%", text[finalBar..], StringComparison.Ordinal);
        Assert.Contains("1,040 samples/s", text[finalBar..], StringComparison.Ordinal);
        Assert.Contains("loss 0.021", text[finalBar..], StringComparison.Ordinal);
    }

    [Fact]
    public void Live_sink_takes_reports_from_many_threads_and_prints_later_ones_plainly()
    {
        var (console, output) = InteractiveTestConsole();
        var sink = new LiveProgressSink(console, TimeSpan.FromMilliseconds(5));
        sink.Report(new(ProgressKinds.EpochStart, 1, 1, 0, 1000, double.NaN, 0, null));
        Parallel.For(0, 4, t =>
        {
            for (var i = 1; i <= 250; i++)
            {
                sink.Report(new(ProgressKinds.Step, 1, 1, i, 1000, 0.5, 100, null));
                if (i % 25 == 0)
                {
                    sink.Report(new(ProgressKinds.Message, 1, 1, i, 1000, 0.5, 100, $"thread {t} line {i}"));
                }
            }
        });
        sink.Dispose();
        sink.Report(new(ProgressKinds.Message, 1, 1, 0, 0, 0, 0, "after dispose"));
        sink.Dispose();

        Assert.Null(sink.DisplayFailure);
        var text = output.ToString();
        for (var t = 0; t < 4; t++)
        {
            var positions = Enumerable.Range(1, 10).Select(k => text.IndexOf($"thread {t} line {k * 25}\n", StringComparison.Ordinal)).ToList();
            Assert.All(positions, p => Assert.True(p >= 0));
            Assert.Equal(positions.Order(), positions);
        }

        Assert.EndsWith("after dispose\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Live_sink_without_an_epoch_start_still_tracks_steps()
    {
        var (console, output) = InteractiveTestConsole();
        using (var sink = new LiveProgressSink(console, TimeSpan.FromMilliseconds(10)))
        {
            sink.Report(new(ProgressKinds.Step, 4, 9, 12, 0, double.NaN, double.NaN, null));
            sink.Report(new(ProgressKinds.LossLine, 4, 9, 20, 0, 0.25, 0, "[4,    20] loss: 0.250"));
        }

        var text = output.ToString();
        Assert.Contains("[4,    20] loss: 0.250\n", text, StringComparison.Ordinal);
        Assert.Contains("epoch 4/9 · step 20/?", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Live_sink_whose_display_cannot_start_prints_its_lines_plainly()
    {
        // Spectre refuses a second live display on a console that already shows one.
        var (console, output) = InteractiveTestConsole();
        using var first = new LiveProgressSink(console, TimeSpan.FromMilliseconds(10));
        first.Report(new(ProgressKinds.EpochStart, 1, 1, 0, 10, double.NaN, 0, null));
        Assert.True(SpinWait.SpinUntil(() => output.ToString().Contains("epoch 1/1", StringComparison.Ordinal), TimeSpan.FromSeconds(10)));
        var second = new LiveProgressSink(console, TimeSpan.FromMilliseconds(10));
        second.Report(new(ProgressKinds.Message, 1, 1, 0, 0, 0, 0, "from the second sink"));
        second.Dispose();
        first.Dispose();

        Assert.Null(first.DisplayFailure);
        Assert.IsType<InvalidOperationException>(second.DisplayFailure);
        Assert.Contains("from the second sink\n", output.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false, false, true, true, true)]
    [InlineData(true, false, true, true, false)]
    [InlineData(false, true, true, true, false)]
    [InlineData(false, false, false, true, false)]
    [InlineData(false, false, true, false, false)]
    public void Live_display_only_on_an_interactive_ansi_terminal_that_wants_progress(
        bool noProgress, bool redirected, bool interactive, bool ansi, bool live)
    {
        Assert.Equal(live, ProgressSinks.UseLive(noProgress, redirected, interactive, ansi));
    }

    [Fact]
    public void For_console_is_plain_with_no_progress_or_redirected_output()
    {
        using (var sink = ProgressSinks.ForConsole(noProgress: true))
        {
            Assert.IsType<PlainProgressSink>(sink);
        }

        // The test host captures standard output.
        if (Console.IsOutputRedirected)
        {
            using var sink = ProgressSinks.ForConsole(noProgress: false);
            Assert.IsType<PlainProgressSink>(sink);
        }
    }
}
