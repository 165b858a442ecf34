using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class NamedMessageGateSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    private TestProbe Probe() => new(fixture.System, new XunitAssertions());

    [Fact]
    public void Gate_must_let_a_named_message_in_only_from_that_nodes_registered_actor()
    {
        var (member, voter, stranger) = (Probe(), Probe(), Probe());
        var admission = new Admission<IActorRef>(JobId, 0, n => n.Path.ToString());
        admission.Admit(Register("a"), member.Ref);
        var voters = new Electorate<IActorRef>();
        voters.Elect([new Registration<IActorRef>(Register("b"), voter.Ref)], RegroupProtocol.VoterAddress);
        var gate = new NamedMessageGate(admission, voters, Akka.Event.Logging.GetLogger(fixture.System, "gate-spec"));

        Assert.False(gate.KeepsOut(new NodeReady(1, "a"), member.Ref));
        Assert.False(gate.KeepsOut(new NodeHalted(2, "b", [], ""), voter.Ref));
        Assert.False(gate.KeepsOut(new GetStatus("q"), stranger.Ref));
        Assert.True(gate.KeepsOut(new NodeFailed("a", "forged"), stranger.Ref));
        Assert.True(gate.KeepsOut(new NodeReady(1, "b"), member.Ref));
        Assert.Equal(2, gate.KeptOut);
    }

    [Fact]
    public void Gate_must_log_the_first_few_it_keeps_out_and_then_every_hundredth()
    {
        const string source = "gate-flood";
        var stranger = Probe();
        var gate = new NamedMessageGate(new Admission<IActorRef>(JobId, 0, n => n.Path.ToString()), new Electorate<IActorRef>(), Akka.Event.Logging.GetLogger(fixture.System, source));
        var log = Probe();
        fixture.System.EventStream.Subscribe(log.Ref, typeof(Warning));
        try
        {
            for (var i = 0; i < 250; i++) Assert.True(gate.KeepsOut(new NodeFailed("a", "forged"), stranger.Ref));
            var logged = log.ReceiveWhile(TimeSpan.FromSeconds(1), m => m is Warning w && w.LogSource.StartsWith(source, StringComparison.Ordinal) ? w : null, msgs: 20);
            Assert.Equal(12, logged.Count);
            Assert.EndsWith("200 ignored so far", logged[^1].Message.ToString());
        }
        finally
        {
            fixture.System.EventStream.Unsubscribe(log.Ref);
        }
    }
}
