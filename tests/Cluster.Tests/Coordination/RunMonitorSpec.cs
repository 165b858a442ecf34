using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class RunMonitorSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    private static int _monitors;

    private static ActorTrainSettings Settings(string hocon = "") => ActorTrainSettings.Create(TestConfig.With($"""
        actortrain.job-id = {JobId}
        actortrain.min-nodes = 2
        actortrain.training.epochs = 3
        {hocon}
        """));

    private static WorldAssignment World(long generation, params string[] nodes) =>
        new(generation, nodes.Select((n, i) => WorldNode(n, 2 * i)).ToArray(), 2 * nodes.Length,
            new TrainingPlan(4, 16, 42, 10, 1 << 20, false, 1 << 16, "tcp", [], "none", 1), SourceReplica.FreshStart, RunHistory.Empty);

    private TestProbe Probe() => new(fixture.System, new XunitAssertions());

    /// <summary>A monitor that logs under <paramref name="source"/>, as it logs under the coordinator's name.</summary>
    private IActorRef Monitor(ActorTrainSettings settings, string source) =>
        fixture.System.ActorOf(RunMonitor.Props(settings, Akka.Event.Logging.GetLogger(fixture.System, source)), $"monitor-{Interlocked.Increment(ref _monitors)}");

    private static ClusterStatus Ask(IActorRef monitor, TestProbe asker, RunMonitor.Query query)
    {
        asker.Send(monitor, query);
        return asker.ExpectMsg<ClusterStatus>(TestConfig.Timeout);
    }

    [Fact]
    public void Monitor_must_list_the_registered_nodes_before_a_world_forms_and_the_worlds_nodes_after()
    {
        var monitor = Monitor(Settings(), "coordinator-status");
        var asker = Probe();
        Registration<IActorRef>[] registered = [new(Register("a"), asker.Ref)];

        var before = Ask(monitor, asker, new RunMonitor.Query("q1", CoordinatorPhase.WaitingForNodes, 0, 0, registered));
        Assert.Equal(("q1", JobId, "waiting-for-nodes", 0L, 0, 3, 0), (before.RequestId, before.JobId, before.Phase, before.Generation, before.Epoch, before.Epochs, before.WorldSize));
        Assert.Equal((1, 2), (before.RegisteredNodes, before.MinNodes));
        var only = Assert.Single(before.Nodes);
        Assert.Equal(("a", -1, -1.0), (only.NodeName, only.FirstRank, only.SecondsSinceReport));

        monitor.Tell(new RunMonitor.Watch(World(2, "a", "b")));
        monitor.Tell(new NodeProgress(2, "b", 1, [Rank(2, 7), Rank(3, 8)]));
        var after = Ask(monitor, asker, new RunMonitor.Query("q2", CoordinatorPhase.Training, 2, 1, registered));
        Assert.Equal(("training", 2L, 1, 4, 4), (after.Phase, after.Generation, after.Epoch, after.Epochs, after.WorldSize));
        Assert.Equal(["a", "b"], after.Nodes.Select(n => n.NodeName));
        Assert.Equal((2, 7L), (after.Nodes[1].FirstRank, after.Nodes[1].Step));
        Assert.Equal("akka.tcp://actortrain@b:4053", after.Nodes[1].Address);

        // A new world: the old one's progress no longer describes anyone.
        monitor.Tell(new RunMonitor.Watch(World(3, "a", "b")));
        Assert.Equal(0, Ask(monitor, asker, new RunMonitor.Query("q3", CoordinatorPhase.Forming, 3, 1, registered)).Nodes[1].Step);
    }

    [Fact]
    public void Monitor_must_publish_the_straggler_when_it_changes()
    {
        var monitor = Monitor(Settings(), "coordinator-straggler");
        var stream = Probe();
        fixture.System.EventStream.Subscribe(stream.Ref, typeof(StragglerChanged));
        try
        {
            monitor.Tell(new RunMonitor.Watch(World(1, "a", "b")));
            monitor.Tell(new NodeProgress(1, "a", 1, [Rank(0, 5, computeMs: 20), Rank(1, 5, computeMs: 21)]));
            monitor.Tell(new NodeProgress(1, "b", 1, [Rank(2, 5, computeMs: 60), Rank(3, 5, computeMs: 22)]));
            var slow = stream.ExpectMsg<StragglerChanged>(TestConfig.Timeout).Current!;
            Assert.Equal(("b", 2), (slow.Node, slow.Rank));

            monitor.Tell(new NodeProgress(1, "b", 1, [Rank(2, 6, computeMs: 21), Rank(3, 6, computeMs: 22)]));
            Assert.Null(stream.ExpectMsg<StragglerChanged>(TestConfig.Timeout).Current);
        }
        finally
        {
            fixture.System.EventStream.Unsubscribe(stream.Ref);
        }
    }

    [Fact]
    public void Monitor_must_report_a_hanging_step_under_the_log_it_was_given_only_while_hang_checks_are_on()
    {
        const string source = "coordinator-hangs";
        var monitor = Monitor(Settings("actortrain.elastic.hang-report-after = 1s"), source);
        var log = Probe();
        fixture.System.EventStream.Subscribe(log.Ref, typeof(Warning));
        try
        {
            // Ranks 0, 1 and 3 have waited 4 s in bucket 3 of step 12; rank 2 on b is still at step 11.
            monitor.Tell(new RunMonitor.Watch(World(1, "a", "b")));
            monitor.Tell(new NodeProgress(1, "a", 1, [Rank(0, 12, 4000, 3), Rank(1, 12, 4000, 3)]));
            monitor.Tell(new NodeProgress(1, "b", 1, [Rank(2, 11, 20), Rank(3, 12, 4000, 3)]));
            Assert.Null(Hang(log, source, TimeSpan.FromSeconds(1.5)));

            monitor.Tell(new RunMonitor.HangChecks(On: true));
            var text = Hang(log, source, TestConfig.Timeout);
            Assert.NotNull(text);
            Assert.Contains("Step 12", text);
            Assert.Contains("bucket(s) 3", text);
            Assert.Contains("rank 2 on node b (at step 11)", text);

            monitor.Tell(new RunMonitor.HangChecks(On: false));
            Ask(monitor, Probe(), new RunMonitor.Query("q", CoordinatorPhase.Regrouping, 1, 1, []));
            Hang(log, source, TimeSpan.FromMilliseconds(300));
            Assert.Null(Hang(log, source, TimeSpan.FromSeconds(2.5)));
        }
        finally
        {
            fixture.System.EventStream.Unsubscribe(log.Ref);
        }
    }

    /// <summary>The text of the first hang report logged under <paramref name="source"/> within <paramref name="within"/>; null when none was.</summary>
    private static string? Hang(TestProbe log, string source, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        for (var left = within; left > TimeSpan.Zero; left = deadline - DateTime.UtcNow)
        {
            if (log.ReceiveOne(left) is Warning w && w.LogSource.StartsWith(source, StringComparison.Ordinal) && w.Message.ToString()!.StartsWith("Step ", StringComparison.Ordinal))
                return w.Message.ToString();
        }
        return null;
    }
}
