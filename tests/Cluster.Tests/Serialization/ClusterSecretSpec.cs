using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using ActorTrain.Cluster.Settings;
using ActorTrain.Cluster.Tests.Metrics;
using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace ActorTrain.Cluster.Tests.Serialization;

/// <summary>Control messages with a cluster secret: written with a tag, read only with a valid one.</summary>
public sealed class ClusterSecretSpec : IDisposable
{
    private readonly ActorSystem _open = ActorSystem.Create("secret-open", TestConfig.Local());
    private readonly ActorSystem _a = ActorSystem.Create("secret-a", TestConfig.Local("actortrain.cluster-secret = \"correct horse\""));
    private readonly ActorSystem _b = ActorSystem.Create("secret-b", TestConfig.Local("actortrain.cluster-secret = \"correct horse\""));
    private readonly ActorSystem _wrong = ActorSystem.Create("secret-wrong", TestConfig.Local("actortrain.cluster-secret = \"battery staple\""));

    public void Dispose() => Task.WhenAll(new[] { _open, _a, _b, _wrong }.Select(s => s.Terminate())).Wait(TestConfig.Timeout);

    private static readonly NodeFailed Message = new("node-a", "CUDA out of memory");

    private static (byte[] Bytes, string Manifest) Write(ActorSystem system, object message)
    {
        var serializer = (ActorTrainMessageSerializer)system.Serialization.FindSerializerFor(message);
        return (serializer.ToBinary(message), serializer.Manifest(message));
    }

    private static object Read(ActorSystem system, (byte[] Bytes, string Manifest) wire) =>
        system.Serialization.Deserialize(wire.Bytes, 3141, wire.Manifest);

    [Fact]
    public void Serializer_must_round_trip_between_nodes_with_the_same_secret()
    {
        var wire = Write(_a, Message);

        Assert.Equal(Message, Read(_b, wire));
        Assert.Equal(Write(_open, Message).Bytes.Length + ActorTrainMessageSerializer.TagSize, wire.Bytes.Length);
    }

    [Fact]
    public void Serializer_must_round_trip_without_a_secret_on_either_side()
    {
        Assert.Equal(Message, Read(_open, Write(_open, Message)));
    }

    [Theory]
    [InlineData("wrong secret")]
    [InlineData("no secret")]
    [InlineData("tag of another manifest")]
    [InlineData("payload changed")]
    [InlineData("shorter than a tag")]
    public void Serializer_must_refuse_a_message_without_a_valid_tag_and_publish_the_refusal(string how)
    {
        var wire = how switch
        {
            "wrong secret" => Write(_wrong, Message),
            "no secret" => Write(_open, Message),
            "tag of another manifest" => (Write(_a, new NodeReady(1, "node-a")).Bytes, Write(_a, Message).Manifest),
            "payload changed" => Tampered(Write(_a, Message)),
            "shorter than a tag" => (new byte[] { 1, 2, 3 }, Write(_a, Message).Manifest),
            _ => throw new ArgumentOutOfRangeException(nameof(how)),
        };
        var probe = new TestProbe(_b, new XunitAssertions());
        _b.EventStream.Subscribe(probe.Ref, typeof(ActorTrainMessageSerializer.Refused));

        var e = Assert.ThrowsAny<SerializationException>(() => Read(_b, wire));

        Assert.Contains("wrong or missing cluster secret", e.Message);
        var refused = probe.ExpectMsg<ActorTrainMessageSerializer.Refused>(TestConfig.Timeout);
        Assert.Equal(DropReason.BadSecret, refused.Reason);
    }

    private static (byte[], string) Tampered((byte[] Bytes, string Manifest) wire)
    {
        var bytes = wire.Bytes.ToArray();
        bytes[3] ^= 0x20;
        return (bytes, wire.Manifest);
    }

    [Fact]
    public void Refusals_must_be_counted_in_the_metrics_by_reason()
    {
        var metrics = new NodeMetrics("node-b");
        var counter = _b.ActorOf(ControlMessageRefusals.Props(metrics));
        // Subscribed once it has processed a message sent after its start.
        var probe = new TestProbe(_b, new XunitAssertions());
        probe.Watch(counter);
        _b.EventStream.Subscribe(probe.Ref, typeof(ActorTrainMessageSerializer.Refused));
        AwaitSubscribed(counter, probe);

        Assert.ThrowsAny<SerializationException>(() => Read(_b, Write(_wrong, Message)));
        probe.ExpectMsg<ActorTrainMessageSerializer.Refused>(TestConfig.Timeout);

        probe.AwaitAssert(() => Assert.Equal(1, Exposition.Parse(metrics.RenderAsync().Result)
            .Value("actortrain_dropped_messages_total", ("reason", DropReason.BadSecret))), TestConfig.Timeout);
    }

    private static void AwaitSubscribed(IActorRef actor, TestProbe probe)
    {
        actor.Tell(new Identify(1), probe.Ref);
        probe.ExpectMsg<ActorIdentity>(TestConfig.Timeout);
    }

    [Fact]
    public void Settings_must_read_the_secret_and_hide_it()
    {
        var settings = ActorTrainSettings.Create(TestConfig.With("actortrain.cluster-secret = \"correct horse\""));

        Assert.True(settings.ClusterSecret.Enabled);
        Assert.Equal("correct horse", settings.ClusterSecret.Value);
        Assert.DoesNotContain("correct horse", settings.ToString());
        Assert.False(ActorTrainSettings.Create(TestConfig.With("")).ClusterSecret.Enabled);
    }

    [Fact]
    public void The_environment_variable_must_win_over_the_config_file()
    {
        var config = ClusterSecretSettings.FromEnvironment("from \"env\" \\ x")
            .WithFallback(TestConfig.With("actortrain.cluster-secret = \"from file\""));

        Assert.Equal("from \"env\" \\ x", ActorTrainSettings.Create(config).ClusterSecret.Value);
        Assert.Equal("from file", ActorTrainSettings.Create(ClusterSecretSettings.FromEnvironment("")
            .WithFallback(TestConfig.With("actortrain.cluster-secret = \"from file\""))).ClusterSecret.Value);
    }

    [Fact]
    public async Task Over_remoting_a_message_with_the_wrong_secret_is_dropped_and_one_with_the_right_secret_arrives()
    {
        var systems = new[] { "correct horse", "battery staple", "correct horse" }
            .Select((secret, i) => ActorSystem.Create($"secret-remote-{i}", TestConfig.Remote($"actortrain.cluster-secret = \"{secret}\"")))
            .ToArray();
        try
        {
            var (receiver, stranger, member) = (systems[0], systems[1], systems[2]);
            var inbox = new TestProbe(receiver, new XunitAssertions());
            var refusals = new TestProbe(receiver, new XunitAssertions());
            receiver.EventStream.Subscribe(refusals.Ref, typeof(ActorTrainMessageSerializer.Refused));
            var target = receiver.ActorOf(Props.Create(() => new Relay(inbox.Ref)), "target");
            var path = $"{TestConfig.AddressOf(receiver)}/user/target";

            stranger.ActorSelection(path).Tell(new NodeFailed("node-a", "forged"));
            Assert.Equal(DropReason.BadSecret, refusals.ExpectMsg<ActorTrainMessageSerializer.Refused>(TestConfig.Timeout).Reason);
            inbox.ExpectNoMsg(TestConfig.Quiet);

            member.ActorSelection(path).Tell(Message);
            Assert.Equal(Message, inbox.ExpectMsg<NodeFailed>(TestConfig.Timeout));
            GC.KeepAlive(target);
        }
        finally
        {
            await Task.WhenAll(systems.Select(s => s.Terminate())).WaitAsync(TestConfig.Timeout);
        }
    }

    private sealed class Relay : ReceiveActor
    {
        public Relay(IActorRef to) => ReceiveAny(m => to.Forward(m));
    }
}
