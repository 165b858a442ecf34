using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Serialization;
using MessagePack;
using MessagePack.Resolvers;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace ActorTrain.Cluster.Serialization;

/// <summary>
/// MessagePack serializer for every <see cref="IActorTrainMessage"/>. The manifest is a short,
/// fixed code per type (never a CLR type name), so nothing from the network chooses which type
/// gets instantiated beyond this closed list, and decoding runs with MessagePack's
/// untrusted-data security (depth limits, collision-resistant hashing).
/// </summary>
public sealed class ActorTrainMessageSerializer : SerializerWithStringManifest
{
    private static readonly (Type Type, string Manifest)[] Types =
    [
        (typeof(RegisterNode), "reg"),
        (typeof(NodeRegistered), "regok"),
        (typeof(RegistrationRefused), "regno"),
        (typeof(WorldAssignment), "world"),
        (typeof(NodeReady), "ready"),
        (typeof(StartEpoch), "epoch"),
        (typeof(EpochCompleted), "epochdone"),
        (typeof(NonFiniteGradientReported), "nonfinite"),
        (typeof(FinishTraining), "finish"),
        (typeof(NodeFinished), "finished"),
        (typeof(EndRun), "end"),
        (typeof(NodeFailed), "failed"),
        (typeof(GradientChunk), "chunk"),
    ];

    private static readonly Dictionary<Type, string> ManifestOf = Types.ToDictionary(t => t.Type, t => t.Manifest);
    private static readonly Dictionary<string, Type> TypeOf = Types.ToDictionary(t => t.Manifest, t => t.Type);

    /// <summary>The options every project message is written and read with.</summary>
    public static readonly MessagePackSerializerOptions Options = MessagePackSerializerOptions.Standard
        .WithResolver(StandardResolver.Instance)
        .WithSecurity(MessagePackSecurity.UntrustedData);

    public ActorTrainMessageSerializer(ExtendedActorSystem system) : base(system) { }

    public override int Identifier => 3141;

    public static IReadOnlyCollection<Type> MessageTypes => ManifestOf.Keys;

    public override string Manifest(object o) =>
        ManifestOf.TryGetValue(o.GetType(), out var manifest)
            ? manifest
            : throw new ArgumentException($"{o.GetType()} is not an ActorTrain wire message");

    public override byte[] ToBinary(object obj) =>
        MessagePackSerializer.Serialize(ManifestOf.ContainsKey(obj.GetType()) ? obj.GetType() : throw new ArgumentException($"{obj.GetType()} is not an ActorTrain wire message"), obj, Options);

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!TypeOf.TryGetValue(manifest, out var type))
            throw new SerializationException($"unknown ActorTrain message manifest \"{Truncate(manifest)}\"");
        try
        {
            return MessagePackSerializer.Deserialize(type, bytes, Options)
                ?? throw new SerializationException($"empty {type.Name} message");
        }
        catch (MessagePackSerializationException e)
        {
            throw new SerializationException($"malformed {type.Name} message ({bytes.Length} bytes): {e.Message}", e);
        }
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
