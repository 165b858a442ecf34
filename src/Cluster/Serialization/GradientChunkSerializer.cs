using System.Buffers.Binary;
using System.Runtime.InteropServices;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Sync.Transport;
using Akka.Actor;
using Akka.Serialization;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace ActorTrain.Cluster.Serialization;

/// <summary>
/// Writes a <see cref="GradientChunk"/> as a fixed little-endian header followed by its raw float32
/// values, and reads it back. A chunk made by <see cref="Prepare"/> (as the Akka transport sends
/// them) is in that form from the start, so writing it copies nothing; any other chunk is written
/// into one new array with one copy of its floats. Reading checks the whole header against the
/// length of what arrived, then (on little-endian hosts) keeps the array it was given and shows its
/// floats in place: Akka remoting hands every message a fresh array of its own
/// (<c>ByteString.ToByteArray</c> in Akka.Remote's MessageSerializer), so a received chunk costs no
/// copy and no allocation here. A big-endian host copies them, swapping each value's bytes.
/// <code>
/// 0 u16 magic "GC" | 2 u16 format version | 4 i64 generation | 12 i64 step
/// 20 i32 bucket | 24 i32 lane | 28 i32 ring step | 32 i32 chunk | 36 i32 sending peer
/// 40 i32 element count | 44 float32[element count]
/// </code>
/// The step may be negative (broadcasts use negative steps); every other id may not.
/// </summary>
public sealed class GradientChunkSerializer : Serializer
{
    /// <summary>"GC" read as a little-endian u16.</summary>
    public const ushort Magic = 0x4347;
    public const ushort FormatVersion = 1;
    public const int HeaderSize = 44;

    public GradientChunkSerializer(ExtendedActorSystem system) : base(system) { }

    /// <summary>
    /// Published on the system's event stream for every chunk <see cref="FromBinary"/> refuses, so the
    /// node's gradient endpoint can count and log it: Akka only drops the message and logs its own line.
    /// </summary>
    public sealed record Refused(string Problem);

    public override int Identifier => 3142;

    /// <summary>One type only: the bytes carry their own magic and version instead of a manifest.</summary>
    public override bool IncludeManifest => false;

    /// <summary>Bytes of a serialized chunk of <paramref name="elements"/> floats.</summary>
    public static int SerializedSize(int elements) => checked(HeaderSize + elements * sizeof(float));

    /// <summary>
    /// A chunk of a copy of <paramref name="data"/>, written in its wire form at once: the one copy a
    /// send needs (the caller may reuse <paramref name="data"/> as soon as this returns), and
    /// <see cref="ToBinary"/> then hands out those bytes as they are. The chunk's
    /// <see cref="GradientChunk.Data"/> reads the floats from the same array, for a local receiver.
    /// </summary>
    internal static GradientChunk Prepare(ChunkKey key, int fromPeer, ReadOnlySpan<float> data)
    {
        if (!BitConverter.IsLittleEndian) return Chunk(key, fromPeer, data.ToArray());

        var bytes = GC.AllocateUninitializedArray<byte>(SerializedSize(data.Length));
        WriteHeader(bytes, key, fromPeer, data.Length);
        MemoryMarshal.AsBytes(data).CopyTo(bytes.AsSpan(HeaderSize));
        return Chunk(key, fromPeer, new SerializedChunkFloats(bytes).Memory);
    }

    private static GradientChunk Chunk(ChunkKey key, int fromPeer, ReadOnlyMemory<float> data) =>
        new(key.Generation, key.Step, key.Bucket, key.Lane, key.RingStep, key.Chunk, fromPeer, data);

    public override byte[] ToBinary(object obj)
    {
        if (obj is not GradientChunk chunk) throw new ArgumentException($"{obj.GetType()} is not a {nameof(GradientChunk)}", nameof(obj));
        if (AlreadySerialized(chunk) is { } serialized) return serialized;

        var data = chunk.Data.Span;
        var bytes = GC.AllocateUninitializedArray<byte>(SerializedSize(data.Length));
        WriteHeader(bytes, chunk.Key, chunk.FromPeer, data.Length);
        var payload = MemoryMarshal.Cast<byte, int>(bytes.AsSpan(HeaderSize));
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.Cast<float, int>(data).CopyTo(payload);
        }
        else
        {
            BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<float, int>(data), payload);
        }

        return bytes;
    }

    /// <summary>
    /// The bytes <see cref="Prepare"/> wrote for this chunk, when its data is all of them and its ids
    /// are still the ones in their header (a <c>with</c> copy keeps the data but may change an id).
    /// </summary>
    private static byte[]? AlreadySerialized(GradientChunk chunk)
    {
        if (!MemoryMarshal.TryGetMemoryManager(chunk.Data, out SerializedChunkFloats? view, out var start, out var length)) return null;
        var bytes = view.Serialized;
        if (start != 0 || SerializedSize(length) != bytes.Length) return null;
        Span<byte> header = stackalloc byte[HeaderSize];
        WriteHeader(header, chunk.Key, chunk.FromPeer, length);
        return header.SequenceEqual(bytes.AsSpan(0, HeaderSize)) ? bytes : null;
    }

    private static void WriteHeader(Span<byte> header, ChunkKey key, int fromPeer, int count)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[2..], FormatVersion);
        key.Write(header[4..]);
        BinaryPrimitives.WriteInt32LittleEndian(header[36..], fromPeer);
        BinaryPrimitives.WriteInt32LittleEndian(header[40..], count);
    }

    public override object FromBinary(byte[] bytes, Type type)
    {
        try
        {
            return Decode(bytes);
        }
        catch (SerializationException e)
        {
            system?.EventStream.Publish(new Refused(e.Message));
            throw;
        }
    }

    private static GradientChunk Decode(byte[] bytes)
    {
        if (bytes.Length < HeaderSize)
            throw Malformed(bytes, $"shorter than the {HeaderSize}-byte header");
        var header = bytes.AsSpan(0, HeaderSize);
        var magic = BinaryPrimitives.ReadUInt16LittleEndian(header);
        if (magic != Magic)
            throw Malformed(bytes, $"bad magic 0x{magic:x4}, expected 0x{Magic:x4}");
        var version = BinaryPrimitives.ReadUInt16LittleEndian(header[2..]);
        if (version != FormatVersion)
            throw Malformed(bytes, $"format version {version}, this node reads version {FormatVersion} (another protocol version?)");

        var key = ChunkKey.Read(header[4..]);
        var fromPeer = BinaryPrimitives.ReadInt32LittleEndian(header[36..]);
        var count = BinaryPrimitives.ReadInt32LittleEndian(header[40..]);
        if (NegativeId(key, fromPeer) is { } id)
            throw Malformed(bytes, $"negative {id}");
        if (count < 0)
            throw Malformed(bytes, $"negative element count {count}");
        // Compared before the floats are looked at: a chunk never claims more than what arrived.
        var payloadBytes = bytes.Length - HeaderSize;
        if ((long)count * sizeof(float) != payloadBytes)
            throw Malformed(bytes, $"header declares {count} floats ({(long)count * sizeof(float)} bytes) but {payloadBytes} bytes follow it");

        ReadOnlyMemory<float> data;
        if (count == 0)
        {
            data = ReadOnlyMemory<float>.Empty;
        }
        else if (BitConverter.IsLittleEndian)
        {
            // The wire order is the memory order: the floats are read where they arrived. The array is
            // this message's alone (see the class remarks), and the chunk is never written to.
            data = new SerializedChunkFloats(bytes).Memory;
        }
        else
        {
            var floats = GC.AllocateUninitializedArray<float>(count);
            BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<byte, int>(bytes.AsSpan(HeaderSize)), MemoryMarshal.Cast<float, int>(floats.AsSpan()));
            data = floats;
        }

        return Chunk(key, fromPeer, data);
    }

    /// <summary>Every id but the step (broadcasts use negative steps) is zero or more.</summary>
    private static string? NegativeId(ChunkKey key, int fromPeer) =>
        key.Generation < 0 ? $"generation {key.Generation}"
        : key.Bucket < 0 ? $"bucket {key.Bucket}"
        : key.Lane < 0 ? $"lane {key.Lane}"
        : key.RingStep < 0 ? $"ring step {key.RingStep}"
        : key.Chunk < 0 ? $"chunk index {key.Chunk}"
        : fromPeer < 0 ? $"sending peer {fromPeer}"
        : null;

    private static SerializationException Malformed(byte[] bytes, string problem) =>
        new($"malformed {nameof(GradientChunk)} ({bytes.Length} bytes): {problem}");
}
