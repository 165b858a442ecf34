using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Settings;
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
/// untrusted-data security (depth limits, collision-resistant hashing). A decoded message must
/// also have exactly its type's fields, no trailing bytes, and no null where the type does not
/// allow one: MessagePack alone fills missing fields with defaults, so a payload meant for
/// another type (or cut short by a peer) would otherwise become a message with null fields.
/// <para>
/// With a cluster secret (<see cref="ClusterSecretSettings"/>, read from the ActorSystem's config)
/// every message written ends with a <see cref="TagSize"/>-byte tag: HMAC-SHA256 over the manifest
/// and the payload, with a key derived from the secret. A message read must end with a valid one,
/// else it is refused as having a wrong or missing cluster secret. Every refusal is published on the
/// event stream as <see cref="Refused"/> (to be counted and logged: Akka only drops the message).
/// </para>
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
        (typeof(NodeProgress), "progress"),
        (typeof(GetStatus), "status?"),
        (typeof(ClusterStatus), "status"),
        (typeof(Regroup), "regroup"),
        (typeof(NodeHalted), "halted"),
        (typeof(GenerationBroken), "broken"),
        (typeof(HistoryUpdate), "history"),
        (typeof(LeftOut), "leftout"),
        (typeof(NodeLeaving), "leaving"),
    ];

    private static readonly Dictionary<Type, string> ManifestOf = Types.ToDictionary(t => t.Type, t => t.Manifest);
    private static readonly Dictionary<string, Type> TypeOf = Types.ToDictionary(t => t.Manifest, t => t.Type);
    private static readonly Dictionary<Type, Field[]> FieldsOf = ReadFields(Types.Select(t => t.Type));

    /// <summary>The options every project message is written and read with.</summary>
    public static readonly MessagePackSerializerOptions Options = MessagePackSerializerOptions.Standard
        .WithResolver(StandardResolver.Instance)
        .WithSecurity(MessagePackSecurity.UntrustedData);

    /// <summary>Bytes of the tag a message carries when a cluster secret is set.</summary>
    public const int TagSize = 16;

    /// <summary>Key of the tags, derived from the cluster secret; null without one.</summary>
    private readonly byte[]? _tagKey;

    public ActorTrainMessageSerializer(ExtendedActorSystem system) : base(system)
    {
        var secret = ClusterSecretSettings.Create(system.Settings.Config);
        if (secret.Enabled) _tagKey = DeriveTagKey(secret.Value);
    }

    /// <summary>Published on the system's event stream for every message <see cref="FromBinary"/> refuses; <paramref name="Reason"/> is a <see cref="DropReason"/>.</summary>
    public sealed record Refused(string Problem, string Reason);

    public override int Identifier => 3141;

    /// <summary>The HMAC key of a cluster secret: HKDF-SHA256 of the secret, bound to this use.</summary>
    public static byte[] DeriveTagKey(string secret) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(secret), 32, salt: null, info: Encoding.ASCII.GetBytes("actortrain control messages v1"));

    private static void Tag(byte[] key, string manifest, ReadOnlySpan<byte> payload, Span<byte> tag)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        hmac.AppendData(Encoding.UTF8.GetBytes(manifest));
        hmac.AppendData([0]);
        hmac.AppendData(payload);
        Span<byte> full = stackalloc byte[32];
        hmac.GetHashAndReset(full);
        full[..TagSize].CopyTo(tag);
    }

    public static IReadOnlyCollection<Type> MessageTypes => ManifestOf.Keys;

    public override string Manifest(object o) => WireManifest(o);

    /// <summary>The manifest of a project wire message; throws for any other object.</summary>
    private static string WireManifest(object message) =>
        ManifestOf.TryGetValue(message.GetType(), out var manifest)
            ? manifest
            : throw new ArgumentException($"{message.GetType()} is not an ActorTrain wire message");

    public override byte[] ToBinary(object obj)
    {
        var manifest = WireManifest(obj);
        var payload = MessagePackSerializer.Serialize(obj.GetType(), obj, Options);
        if (_tagKey is null) return payload;
        var bytes = new byte[payload.Length + TagSize];
        payload.CopyTo(bytes, 0);
        Tag(_tagKey, manifest, payload, bytes.AsSpan(payload.Length));
        return bytes;
    }

    public override object FromBinary(byte[] bytes, string manifest)
    {
        try
        {
            return Decode(Verified(bytes, manifest), manifest);
        }
        catch (SerializationException e)
        {
            system?.EventStream.Publish(new Refused(e.Message, e is SecretException ? DropReason.BadSecret : DropReason.Malformed));
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="message"/> and reads it back as a peer without a cluster secret would
    /// (the same checks as <see cref="FromBinary"/>); for warming the formatters up, see <see cref="WireWarmUp"/>.
    /// </summary>
    internal static object RoundTrip(object message)
    {
        var manifest = WireManifest(message);
        return Decode(MessagePackSerializer.Serialize(message.GetType(), message, Options), manifest);
    }

    /// <summary>The payload of a message whose tag is valid (all of it without a secret).</summary>
    private byte[] Verified(byte[] bytes, string manifest)
    {
        if (_tagKey is null) return bytes;
        if (bytes.Length < TagSize)
            throw new SecretException($"wrong or missing cluster secret: a message of {bytes.Length} bytes (manifest \"{Truncate(manifest)}\") has no tag");
        var payload = bytes.AsSpan(0, bytes.Length - TagSize);
        Span<byte> expected = stackalloc byte[TagSize];
        Tag(_tagKey, manifest, payload, expected);
        if (!CryptographicOperations.FixedTimeEquals(expected, bytes.AsSpan(bytes.Length - TagSize)))
            throw new SecretException($"wrong or missing cluster secret: the tag of a message of {bytes.Length} bytes (manifest \"{Truncate(manifest)}\") does not match (actortrain.cluster-secret / ACTORTRAIN_CLUSTER_SECRET must be the same on every node)");
        return payload.ToArray();
    }

    /// <summary>A message without a valid tag for this node's cluster secret.</summary>
    private sealed class SecretException(string message) : SerializationException(message);

    private static object Decode(byte[] bytes, string manifest)
    {
        if (!TypeOf.TryGetValue(manifest, out var type))
            throw new SerializationException($"unknown ActorTrain message manifest \"{Truncate(manifest)}\"");
        try
        {
            var header = new MessagePackReader(bytes);
            var count = header.NextMessagePackType == MessagePackType.Array ? header.ReadArrayHeader() : -1;
            if (count != FieldsOf[type].Length)
                throw new SerializationException($"malformed {type.Name} message ({bytes.Length} bytes): {(count < 0 ? "not an array" : $"{count} fields")}, expected {FieldsOf[type].Length} (another protocol version?)");

            var message = MessagePackSerializer.Deserialize(type, bytes, Options)
                ?? throw new SerializationException($"empty {type.Name} message");

            var whole = new MessagePackReader(bytes);
            whole.Skip();
            if (whole.Consumed != bytes.Length)
                throw new SerializationException($"malformed {type.Name} message: {bytes.Length - whole.Consumed} bytes after its end");
            if (FindNull(message, "") is { } field)
                throw new SerializationException($"malformed {type.Name} message: {field} is missing");
            return message;
        }
        catch (Exception e) when (e is MessagePackSerializationException or EndOfStreamException)
        {
            throw new SerializationException($"malformed {type.Name} message ({bytes.Length} bytes): {e.Message}", e);
        }
    }

    /// <summary>The [Key] properties of a message type, in key order, with whether each may be null.</summary>
    private sealed record Field(PropertyInfo Property, bool MayBeNull, bool ElementsMayBeNull);

    /// <summary>Reads the fields of the given types and of the nested message objects they contain.</summary>
    private static Dictionary<Type, Field[]> ReadFields(IEnumerable<Type> types)
    {
        var nullability = new NullabilityInfoContext();
        var fields = new Dictionary<Type, Field[]>();
        var todo = new Queue<Type>(types);
        while (todo.TryDequeue(out var type))
        {
            if (fields.ContainsKey(type)) continue;
            fields[type] = type.GetProperties()
                .Where(p => p.GetCustomAttribute<KeyAttribute>() is not null)
                .OrderBy(p => p.GetCustomAttribute<KeyAttribute>()!.IntKey)
                .Select(p =>
                {
                    var n = nullability.Create(p);
                    return new Field(p, n.ReadState != NullabilityState.NotNull, n.ElementType?.ReadState != NullabilityState.NotNull);
                })
                .ToArray();
            foreach (var f in fields[type])
            {
                var t = f.Property.PropertyType.IsArray ? f.Property.PropertyType.GetElementType()! : f.Property.PropertyType;
                if (t.GetCustomAttribute<MessagePackObjectAttribute>() is not null) todo.Enqueue(t);
            }
        }
        return fields;
    }

    /// <summary>The path of the first null that the message's types do not allow, or null when there is none.</summary>
    private static string? FindNull(object message, string prefix)
    {
        if (!FieldsOf.TryGetValue(message.GetType(), out var fields)) return null;
        foreach (var f in fields)
        {
            var path = prefix + f.Property.Name;
            var problem = f.Property.GetValue(message) switch
            {
                null => f.MayBeNull ? null : path,
                object?[] array => array
                    .Select((e, i) => e is null ? (f.ElementsMayBeNull ? null : $"{path}[{i}]") : FindNull(e, $"{path}[{i}]."))
                    .FirstOrDefault(p => p is not null),
                var value => FindNull(value, path + "."),
            };
            if (problem is not null) return problem;
        }
        return null;
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
