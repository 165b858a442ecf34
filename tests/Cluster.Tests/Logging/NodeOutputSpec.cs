using System.Collections.Concurrent;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Event;

namespace ActorTrain.Cluster.Tests.Logging;

/// <summary>
/// The node's lines for a person reach the sink the host gave its ActorSystem, from actors and
/// from the runner, with the node's name; a host that gave none gets them through Akka's logging.
/// </summary>
public sealed class NodeOutputSpec : IDisposable
{
    private readonly List<ActorSystem> _systems = [];

    private sealed class RecordingLines : INodeLineSink
    {
        public readonly BlockingCollection<NodeLine> Lines = [];

        public void Write(NodeLine line) => Lines.Add(line);

        public NodeLine Next() =>
            Lines.TryTake(out var line, TimeSpan.FromSeconds(10)) ? line : throw new TimeoutException("no line reached the host's sink within 10 s");
    }

    private sealed class Speaker : ReceiveActor
    {
        public Speaker() => Receive<string>(text =>
        {
            ProgressLine.Info("Epoch {0}/{1}: {2}", 1, 2, text);
            Sender.Tell("done");
        });
    }

    private static readonly Config Quiet = ConfigurationFactory.ParseString("akka.loglevel = INFO\nakka.stdout-loglevel = OFF");

    private ActorSystem Start(string name, INodeLineSink? sink, Config? config = null)
    {
        var setup = ActorSystemSetup.Create(BootstrapSetup.Create().WithConfig(config ?? Quiet));
        if (sink is not null) setup = setup.And(new NodeOutputSetup(sink));
        var system = ActorSystem.Create(name, setup);
        _systems.Add(system);
        return system;
    }

    [Fact]
    public void An_actors_progress_line_reaches_the_hosts_sink_with_the_node_name()
    {
        var lines = new RecordingLines();
        var system = Start("output-spec", lines);
        NodeOutput.Get(system).NodeName = "node-a";
        var speaker = system.ActorOf(Props.Create(() => new Speaker()));
        Assert.Equal("done", speaker.Ask<string>("loss 0.25", TimeSpan.FromSeconds(10)).GetAwaiter().GetResult());

        var line = lines.Next();
        Assert.Equal(NodeLineKind.Progress, line.Kind);
        Assert.False(line.IsDiagnostic);
        // Under the local launcher the launcher prefixes lines itself and the name is left out.
        var expected = Environment.GetEnvironmentVariable(NodeLog.PrefixedByLauncherVariable) == "1" ? "Epoch 1/2: loss 0.25" : "node-a: Epoch 1/2: loss 0.25";
        Assert.Equal(expected, line.Text);
    }

    [Fact]
    public void Warnings_errors_and_status_lines_keep_their_kind_and_prefix()
    {
        var lines = new RecordingLines();
        var output = NodeOutput.Get(Start("output-kinds", lines));
        output.Warning("checkpoint not written");
        output.Error("node n1: trainer 0 stopped");
        output.Status("n1: epoch 1/2 step 3/10");
        Assert.Equal(new NodeLine(NodeLineKind.Warning, "warning: checkpoint not written"), lines.Next());
        Assert.Equal(new NodeLine(NodeLineKind.Error, "error: node n1: trainer 0 stopped"), lines.Next());
        Assert.Equal(new NodeLine(NodeLineKind.Status, "n1: epoch 1/2 step 3/10"), lines.Next());
        Assert.True(new NodeLine(NodeLineKind.Warning, "").IsDiagnostic);
    }

    [Fact]
    public void Akka_log_events_go_through_the_node_logger_to_the_same_sink()
    {
        var lines = new RecordingLines();
        var config = ConfigurationFactory.ParseString("akka.loggers = [\"ActorTrain.Cluster.Logging.NodeLogger, ActorTrain.Cluster\"]").WithFallback(Quiet);
        var system = Start("output-log", lines, config);
        system.Log.Warning("the disk is {0}", "full");
        NodeLine line;
        do line = lines.Next(); while (!line.Text.Contains("the disk is full"));
        Assert.Equal(NodeLineKind.Log, line.Kind);
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{3} WARN  .*: the disk is full$", line.Text);
    }

    [Fact]
    public void Remotings_warning_about_a_channel_closed_from_both_ends_is_left_out_but_its_other_warnings_are_not()
    {
        var lines = new RecordingLines();
        var config = ConfigurationFactory.ParseString("akka.loggers = [\"ActorTrain.Cluster.Logging.NodeLogger, ActorTrain.Cluster\"]").WithFallback(Quiet);
        var system = Start("output-noise", lines, config);
        const string source = "akka://actortrain/TcpClientHandler";
        system.EventStream.Publish(new Warning(source, typeof(object), "Unable to REMOVE channel [a->b](Id=1) from connection group. May not shut down cleanly."));
        system.EventStream.Publish(new Warning(source, typeof(object), "the connection to b was reset"));
        NodeLine line;
        do line = lines.Next(); while (!line.Text.Contains("connection"));
        Assert.Contains("the connection to b was reset", line.Text);
        Assert.True(NodeLogger.IsShutdownNoise(new Warning(source, typeof(object), "Unable to REMOVE channel [x]")));
        Assert.False(NodeLogger.IsShutdownNoise(new Error(null, source, typeof(object), "Unable to REMOVE channel [x]")));
    }

    [Fact]
    public void Without_a_sink_the_lines_go_through_akkas_logging()
    {
        var system = Start("output-fallback", sink: null);
        var events = new BlockingCollection<LogEvent>();
        var listener = system.ActorOf(Props.Create(() => new Forward(events)));
        system.EventStream.Subscribe(listener, typeof(Warning));
        Assert.True(NodeOutput.Get(system).ThroughAkkaLogging);
        NodeOutput.Get(system).Warning("no quorum");
        Assert.True(events.TryTake(out var e, TimeSpan.FromSeconds(10)), "no log event within 10 s");
        Assert.Equal("warning: no quorum", e!.Message.ToString());
    }

    [Fact]
    public void A_line_written_outside_an_actor_without_the_system_is_refused_with_a_clear_error()
    {
        // On a thread of its own: a TestKit made earlier on this test thread leaves its test actor as the
        // thread's current actor, and the line would then go to that actor's system.
        Exception? thrown = null;
        var thread = new Thread(() => thrown = Record.Exception(() => ProgressLine.Info("nowhere to go")));
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(10)), "the line was not written within 10 s");
        var e = Assert.IsType<InvalidOperationException>(thrown);
        Assert.Contains("outside an actor", e.Message);
    }

    private sealed class Forward : ReceiveActor
    {
        public Forward(BlockingCollection<LogEvent> events) => Receive<LogEvent>(events.Add);
    }

    public void Dispose()
    {
        foreach (var system in _systems) system.Terminate().Wait(TimeSpan.FromSeconds(10));
    }
}
