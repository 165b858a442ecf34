using System.Reflection;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using Akka.Actor;
using MessagePack;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace ActorTrain.Cluster.Tests.Serialization;

public class ActorTrainMessageSerializerSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    private readonly ActorSystem _system = fixture.System;

    private ActorTrainMessageSerializer Serializer => (ActorTrainMessageSerializer)_system.Serialization.FindSerializerForType(typeof(IActorTrainMessage));

    public static TheoryData<string> MessageTypeNames => new(ActorTrainMessageSerializer.MessageTypes.Select(t => t.Name).Order());

    public static TheoryData<int> EdgeCases => new(Enumerable.Range(0, Samples.Edges().Count()));

    private static Type TypeNamed(string name) => ActorTrainMessageSerializer.MessageTypes.Single(t => t.Name == name);

    /// <summary>Through the ActorSystem, as remoting does it: the HOCON binding picks the serializer.</summary>
    private object RoundTrip(object message)
    {
        var serializer = _system.Serialization.FindSerializerFor(message);
        Assert.IsType<ActorTrainMessageSerializer>(serializer);
        var bytes = serializer.ToBinary(message);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
        return _system.Serialization.Deserialize(bytes, serializer.Identifier, manifest);
    }

    [Theory]
    [MemberData(nameof(MessageTypeNames))]
    public void Serializer_must_round_trip_every_wire_message(string typeName)
    {
        var message = Samples.Full[TypeNamed(typeName)];

        WireAssert.Equal(message, RoundTrip(message));
    }

    [Theory]
    [MemberData(nameof(EdgeCases))]
    public void Serializer_must_round_trip_edge_values(int index)
    {
        var message = Samples.Edges().ElementAt(index);

        WireAssert.Equal(message, RoundTrip(message));
    }

    [Fact]
    public void Serializer_must_know_every_wire_message_type_of_the_assembly()
    {
        var wireTypes = typeof(IActorTrainMessage).Assembly.GetTypes()
            .Where(t => typeof(IActorTrainMessage).IsAssignableFrom(t) && t is { IsInterface: false, IsAbstract: false })
            .Select(t => t.FullName)
            .Order();

        Assert.Equal(wireTypes, ActorTrainMessageSerializer.MessageTypes.Select(t => t.FullName).Order());
    }

    [Fact]
    public void Samples_must_set_every_field_of_every_wire_message()
    {
        Assert.Equal(ActorTrainMessageSerializer.MessageTypes.OrderBy(t => t.Name), Samples.Full.Keys.OrderBy(t => t.Name));
        foreach (var (type, message) in Samples.Full)
        {
            foreach (var p in WireAssert.Properties(type))
            {
                var value = p.GetValue(message);
                Assert.False(value is null || (value.GetType().IsValueType && value.Equals(Activator.CreateInstance(value.GetType()))),
                    $"{type.Name}.{p.Name} of the sample has its default value; a field lost in transit would go unnoticed");
            }
        }
    }

    [Fact]
    public void Wire_messages_must_number_their_fields_from_zero_without_gaps()
    {
        foreach (var type in ActorTrainMessageSerializer.MessageTypes)
        {
            Assert.NotNull(type.GetCustomAttribute<MessagePackObjectAttribute>());
            var keys = WireAssert.Properties(type).Select(p => p.GetCustomAttribute<KeyAttribute>()?.IntKey).ToList();
            Assert.DoesNotContain(null, keys);
            Assert.Equal(Enumerable.Range(0, keys.Count).Cast<int?>(), keys.Order());
        }
    }

    [Fact]
    public void Serializer_must_use_short_unique_manifests_and_the_configured_identifier()
    {
        var manifests = Samples.Full.Values.Select(Serializer.Manifest).ToList();

        Assert.Equal(manifests.Count, manifests.Distinct().Count());
        Assert.All(manifests, m => Assert.InRange(m.Length, 1, 16));
        Assert.Equal(3141, Serializer.Identifier);
        Assert.Equal(MessagePackSecurity.UntrustedData, ActorTrainMessageSerializer.Options.Security);
    }

    [Fact]
    public void Serializer_must_refuse_to_write_anything_but_wire_messages()
    {
        Assert.Throws<ArgumentException>(() => Serializer.Manifest("a string"));
        Assert.Throws<ArgumentException>(() => Serializer.ToBinary(new WorldNode("n", "p", "e", 0, 1, [], "h:1")));
    }

    [Theory]
    [InlineData("")]
    [InlineData("nope")]
    [InlineData("ActorTrain.Cluster.Protocol.RegisterNode, ActorTrain.Cluster")]
    [InlineData("System.Diagnostics.Process, System.Diagnostics.Process")]
    public void Serializer_must_refuse_an_unknown_manifest(string manifest)
    {
        var bytes = Serializer.ToBinary(Samples.Full[typeof(RegisterNode)]);

        Assert.Throws<SerializationException>(() => Serializer.FromBinary(bytes, manifest));
    }

    [Theory]
    [MemberData(nameof(MessageTypeNames))]
    public void Serializer_must_refuse_every_truncation_of_a_message(string typeName)
    {
        var message = Samples.Full[TypeNamed(typeName)];
        var bytes = Serializer.ToBinary(message);
        var manifest = Serializer.Manifest(message);

        for (var length = 0; length < bytes.Length; length++)
            Assert.Throws<SerializationException>(() => Serializer.FromBinary(bytes[..length], manifest));
    }

    [Theory]
    [MemberData(nameof(MessageTypeNames))]
    public void Serializer_must_refuse_random_garbage(string typeName)
    {
        var manifest = Serializer.Manifest(Samples.Full[TypeNamed(typeName)]);
        var random = new Random(20240611);

        for (var i = 0; i < 500; i++)
        {
            var bytes = new byte[random.Next(0, 200)];
            random.NextBytes(bytes);
            // Half of them start like a message (a small array) so the decoder gets past the first byte.
            if (i % 2 == 0 && bytes.Length > 0) bytes[0] = (byte)(0x90 + random.Next(0, 16));
            var e = Record.Exception(() => Serializer.FromBinary(bytes, manifest));
            Assert.True(e is SerializationException, $"garbage #{i} ({Convert.ToHexString(bytes)}): {e?.GetType().Name ?? "decoded without error"}");
        }
    }

    [Theory]
    [MemberData(nameof(MessageTypeNames))]
    public void Serializer_must_refuse_the_payload_of_another_message_type(string typeName)
    {
        var target = TypeNamed(typeName);
        var manifest = Serializer.Manifest(Samples.Full[target]);

        foreach (var message in Samples.Full.Values.Where(m => m.GetType() != target && !Indistinguishable(m.GetType(), target)))
        {
            var bytes = Serializer.ToBinary(message);
            var e = Record.Exception(() => Serializer.FromBinary(bytes, manifest));
            Assert.True(e is SerializationException, $"a {message.GetType().Name} read as {typeName}: {e?.GetType().Name ?? "decoded without error"}");
        }
    }

    /// <summary>
    /// Groups of messages that look the same on the wire: NodeReady (long, string), LeftOut
    /// (long, string) and EndRun (int, string); GetStatus (string) and RegistrationRefused (string);
    /// NodeFailed and NodeLeaving (string, string). Nothing in a payload can tell them apart, only
    /// the manifest does.
    /// </summary>
    private static readonly HashSet<Type>[] SameWireShape =
    [
        [typeof(NodeReady), typeof(EndRun), typeof(LeftOut)],
        [typeof(GetStatus), typeof(RegistrationRefused)],
        [typeof(NodeFailed), typeof(NodeLeaving)],
    ];

    private static bool Indistinguishable(Type a, Type b) => SameWireShape.Any(g => g.Contains(a) && g.Contains(b));

    private static readonly ResumePoint Resume = new(0, new TrainingPosition(0, 1, 0, 0, false, 0, 0, 0), 0, "");

    [Fact]
    public void Serializer_must_refuse_a_message_without_a_required_field()
    {
        var noDevices = Serializer.ToBinary(new RegisterNode("job", 1, "fp", "n", 1, "p", "e", null!, "h:1", null, null));
        var noNode = Serializer.ToBinary(new WorldAssignment(1, [null!], 1, new TrainingPlan(1, 1, 1, 1, 1024, false, 1024, "akka", [1], "none", 1), Resume, RunHistory.Empty));
        var noPlan = Serializer.ToBinary(new WorldAssignment(1, [], 0, null!, Resume, RunHistory.Empty));
        var noDevice = Serializer.ToBinary(new WorldAssignment(1, [new WorldNode("n", "p", "e", 0, 1, [null!], "h:1")], 1, new TrainingPlan(1, 1, 1, 1, 1024, false, 1024, "akka", [1], "none", 1), Resume, RunHistory.Empty));

        Assert.Contains("Devices", Assert.Throws<SerializationException>(() => Serializer.FromBinary(noDevices, "reg")).Message);
        Assert.Contains("Nodes[0]", Assert.Throws<SerializationException>(() => Serializer.FromBinary(noNode, "world")).Message);
        Assert.Contains("Plan", Assert.Throws<SerializationException>(() => Serializer.FromBinary(noPlan, "world")).Message);
        Assert.Contains("Nodes[0].Devices[0]", Assert.Throws<SerializationException>(() => Serializer.FromBinary(noDevice, "world")).Message);
    }

    [Fact]
    public void Serializer_must_accept_null_where_a_field_is_optional()
    {
        var bytes = Serializer.ToBinary(new NodeFinished(1, "n", [], null, []));

        Assert.Null(((NodeFinished)Serializer.FromBinary(bytes, "finished")).ModelPath);
    }

    [Fact]
    public void Serializer_must_refuse_a_message_with_more_fields_or_trailing_bytes()
    {
        var bytes = Serializer.ToBinary(Samples.Full[typeof(EndRun)]);
        var moreFields = MessagePackBytes.Pack((ref MessagePackWriter w) =>
        {
            w.WriteArrayHeader(3);
            w.Write(0);
            w.Write("done");
            w.Write("from a later protocol");
        });

        Assert.Contains("expected 2", Assert.Throws<SerializationException>(() => Serializer.FromBinary(moreFields, "end")).Message);
        Assert.Throws<SerializationException>(() => Serializer.FromBinary([.. bytes, 0xc0], "end"));
        Assert.Throws<SerializationException>(() => Serializer.FromBinary(MessagePackBytes.Pack((ref MessagePackWriter w) => w.WriteMapHeader(0)), "end"));
    }

    [Fact]
    public void Serializer_must_refuse_deeply_nested_garbage()
    {
        const int depth = 10_000;
        static void Nest(ref MessagePackWriter w)
        {
            for (var i = 0; i < depth; i++) w.WriteArrayHeader(1);
            w.WriteNil();
        }

        var asExtraField = MessagePackBytes.Pack((ref MessagePackWriter w) =>
        {
            w.WriteArrayHeader(2);
            w.Write(1L);
            Nest(ref w);
        });
        var inDevices = MessagePackBytes.Pack((ref MessagePackWriter w) =>
        {
            w.WriteArrayHeader(8);
            w.Write("job");
            w.Write(1);
            w.Write("fp");
            w.Write("n");
            w.Write(1);
            w.Write("p");
            w.Write("e");
            Nest(ref w);
        });
        var inNodes = MessagePackBytes.Pack((ref MessagePackWriter w) =>
        {
            w.WriteArrayHeader(4);
            w.Write(1L);
            Nest(ref w);
            w.Write(1);
            w.WriteNil();
        });

        Assert.Throws<SerializationException>(() => Serializer.FromBinary(asExtraField, "finish"));
        Assert.Throws<SerializationException>(() => Serializer.FromBinary(inDevices, "reg"));
        Assert.Throws<SerializationException>(() => Serializer.FromBinary(inNodes, "world"));
    }
}
