using System.Diagnostics;
using System.Reflection;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using Akka.Actor;
using MessagePack;
using MessagePack.Resolvers;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace ActorTrain.Cluster.Tests.Serialization;

/// <summary>
/// Payloads built by hand as a hostile peer would: lengths that promise more than arrives, type
/// names where a manifest belongs, MessagePack's typeless format. None may allocate what it
/// promises, pick a CLR type, or become a message.
/// </summary>
public class UntrustedPayloadSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    private readonly ActorTrainMessageSerializer _serializer =
        (ActorTrainMessageSerializer)fixture.System.Serialization.FindSerializerForType(typeof(IActorTrainMessage));

    [Fact]
    public void A_token_whose_length_promises_two_gigabytes_is_refused_without_allocating_them()
    {
        var bytes = MessagePackBytes.Pack((ref MessagePackWriter w) =>
        {
            w.WriteArrayHeader(6);
            w.Write(1L);
            w.WriteArrayHeader(0);
            w.Write(0);
            w.WriteArrayHeader(11); // the training plan, up to its data-plane token
            for (var i = 0; i < 4; i++) w.Write(1);
            w.Write(1024L);
            w.Write(false);
            w.Write(1024);
            w.Write("akka");
            // bin32 header (0xc6, big-endian length) claiming int.MaxValue bytes, followed by 16.
            w.WriteRaw(new byte[] { 0xc6, 0x7f, 0xff, 0xff, 0xff });
            w.WriteRaw(new byte[16]);
        });
        var before = GC.GetAllocatedBytesForCurrentThread();

        var e = Assert.Throws<SerializationException>(() => _serializer.FromBinary(bytes, "world"));

        Assert.Contains("WorldAssignment", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20, "the promised length was not allocated");
    }

    [Fact]
    public void An_array_whose_length_promises_billions_of_elements_is_refused_quickly()
    {
        var bytes = MessagePackBytes.Pack((ref MessagePackWriter w) =>
        {
            w.WriteArrayHeader(5);
            w.Write(1L);
            w.Write("node-a");
            w.WriteArrayHeader(int.MaxValue); // trainer summaries
            w.WriteNil();
        });
        var clock = Stopwatch.StartNew();

        Assert.Throws<SerializationException>(() => _serializer.FromBinary(bytes, "finished"));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
    }

    [Theory]
    [InlineData("ActorTrain.Cluster.Protocol.GradientChunk, ActorTrain.Cluster")]
    [InlineData("chunk")]
    [InlineData("System.Diagnostics.Process, System.Diagnostics.Process")]
    [InlineData("System.Object")]
    public void A_clr_type_name_as_manifest_is_refused(string manifest)
    {
        var bytes = _serializer.ToBinary(Samples.Full[typeof(RegisterNode)]);

        Assert.Contains("unknown ActorTrain message manifest", Assert.Throws<SerializationException>(() => _serializer.FromBinary(bytes, manifest)).Message);
    }

    [Fact]
    public void A_payload_in_messagepacks_typeless_format_is_refused()
    {
        var typeless = MessagePackSerializer.Typeless.Serialize(Samples.Full[typeof(WorldAssignment)]);

        Assert.Throws<SerializationException>(() => _serializer.FromBinary(typeless, "world"));
    }

    [Fact]
    public void Options_are_for_untrusted_data_and_resolve_no_type_from_the_payload()
    {
        var options = ActorTrainMessageSerializer.Options;

        Assert.Same(MessagePackSecurity.UntrustedData, options.Security);
        Assert.Same(StandardResolver.Instance, options.Resolver);
        Assert.IsNotType<TypelessContractlessStandardResolver>(options.Resolver);
    }

    /// <summary>
    /// Polymorphism needs a declared type with more than one possible runtime type: object, an
    /// interface, an abstract or unsealed class, or a [Union]. No wire message has one anywhere in
    /// its fields, so the bytes can never choose what is instantiated.
    /// </summary>
    [Fact]
    public void Every_field_of_every_wire_message_has_one_closed_type()
    {
        var seen = new HashSet<Type>();
        var open = new List<string>();
        var todo = new Queue<Type>(ActorTrainMessageSerializer.MessageTypes);
        while (todo.TryDequeue(out var type))
        {
            if (!seen.Add(type)) continue;
            if (type.GetCustomAttributes<UnionAttribute>().Any()) open.Add($"{type.Name} is a [Union]");
            foreach (var property in type.GetProperties().Where(p => p.GetCustomAttribute<KeyAttribute>() is not null))
            {
                var t = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                while (t.IsArray) t = t.GetElementType()!;
                if (IsScalar(t)) continue;
                // A Dictionary is read into a Dictionary of exactly the declared types (the formatter builds it, not the bytes).
                if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Dictionary<,>) && t.GetGenericArguments().All(IsScalar)) continue;
                if (t.GetCustomAttribute<MessagePackObjectAttribute>() is not null && t.IsSealed && !t.GetCustomAttributes<UnionAttribute>().Any())
                {
                    todo.Enqueue(t);
                    continue;
                }
                open.Add($"{type.Name}.{property.Name} is {t}");
            }
        }

        Assert.Empty(open);
        Assert.True(seen.Count > ActorTrainMessageSerializer.MessageTypes.Count, "nested message objects were checked too");
    }

    private static bool IsScalar(Type t) => t.IsPrimitive || t == typeof(string) || t == typeof(decimal) || t.IsEnum;
}
