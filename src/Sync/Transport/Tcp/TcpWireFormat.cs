using System.Buffers.Binary;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>What a connecting peer says about itself before it may send frames.</summary>
/// <param name="Version">Protocol version of the connecting peer.</param>
/// <param name="Generation">World generation the connection is for.</param>
/// <param name="PeerIndex">Ring position the connecting peer claims.</param>
/// <param name="TokenLength">Length of the token that follows the fixed part.</param>
/// <param name="Flags">Options the connecting peer asks for: <see cref="TcpWireFormat.OffersSharedMemory"/>.</param>
internal readonly record struct Hello(ushort Version, long Generation, int PeerIndex, int TokenLength, int Flags = 0)
{
    /// <summary>Whether a shared-memory offer follows the token.</summary>
    public bool OffersSharedMemory => (Flags & TcpWireFormat.OffersSharedMemory) != 0;
}

/// <summary>The fixed header in front of every chunk's floats.</summary>
/// <param name="Magic">Must be <see cref="TcpWireFormat.FrameMagic"/>; anything else means the stream is out of step.</param>
/// <param name="Key">Which chunk this is.</param>
/// <param name="ElementCount">Number of float32 values that follow the header.</param>
internal readonly record struct FrameHeader(uint Magic, ChunkKey Key, int ElementCount);

/// <summary>
/// Byte layout of the TCP data plane; everything is little-endian.
/// <code>
/// hello  (connecting -> accepting), 24 bytes + token:
///   0 u32 magic "ATRH" | 4 u16 version | 6 u16 token length | 8 i64 generation | 16 i32 peer index | 20 i32 flags
/// shared-memory offer (after the token, when flags has OffersSharedMemory), 17 bytes + name:
///   0 u8 name length | name (ASCII, a file in /dev/shm) | byte[16] nonce
/// answer (accepting -> connecting), 8 bytes:
///   0 u32 magic "ATRA" | 4 i32 status (0 accepted, 100 accepted over the offered shared memory, else a TcpRefusalReason)
/// frame  (connecting -> accepting, after an accepting answer), 40 bytes + 4 x element count:
///   0 u32 magic "ATRF" | 4 i32 element count | 8 i64 generation | 16 i64 step
///   24 i32 bucket | 28 i32 lane | 32 i32 ring step | 36 i32 chunk | float32[element count]
/// </code>
/// The sending peer is not in the frame: a connection carries frames of exactly one peer, the one
/// its handshake authenticated. Over shared memory the frames go through the ring
/// (<see cref="SharedMemoryConnection"/>) and the socket carries only wake-ups.
/// </summary>
internal static class TcpWireFormat
{
    public const uint HelloMagic = 0x48525441;   // "ATRH"
    public const uint AnswerMagic = 0x41525441;  // "ATRA"
    public const uint FrameMagic = 0x46525441;   // "ATRF"
    public const ushort ProtocolVersion = 2;
    public const int HelloFixedSize = 24;
    public const int AnswerSize = 8;
    public const int FrameHeaderSize = 40;
    public const int Accepted = 0;
    public const int AcceptedOverSharedMemory = 100;

    /// <summary>Hello flag: a shared-memory offer follows the token.</summary>
    public const int OffersSharedMemory = 1;

    /// <summary>Longest ring file name an offer may carry.</summary>
    public const int MaxSharedMemoryNameLength = 100;

    public static int HelloSize(int tokenLength) => HelloFixedSize + tokenLength;

    public static void WriteHello(Span<byte> destination, ushort version, long generation, int peerIndex, ReadOnlySpan<byte> token, int flags = 0)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, HelloMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[4..], version);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], checked((ushort)token.Length));
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], generation);
        BinaryPrimitives.WriteInt32LittleEndian(destination[16..], peerIndex);
        BinaryPrimitives.WriteInt32LittleEndian(destination[20..], flags);
        token.CopyTo(destination[HelloFixedSize..]);
    }

    /// <summary>The hello of this protocol version, without options.</summary>
    public static byte[] HelloOf(long generation, int peerIndex, ReadOnlySpan<byte> token)
    {
        var hello = new byte[HelloSize(token.Length)];
        WriteHello(hello, ProtocolVersion, generation, peerIndex, token);
        return hello;
    }

    /// <summary>The hello with a shared-memory offer for the ring <paramref name="name"/> (ASCII) after the token.</summary>
    public static byte[] HelloOffering(long generation, int peerIndex, ReadOnlySpan<byte> token, string name, ReadOnlySpan<byte> nonce)
    {
        if (name.Length is 0 or > MaxSharedMemoryNameLength || !System.Text.Ascii.IsValid(name) || nonce.Length != SharedMemoryRing.NonceSize)
        {
            throw new ArgumentException($"Not a shared-memory offer: name \"{name}\", {nonce.Length}-byte nonce.");
        }

        var hello = new byte[HelloSize(token.Length) + 1 + name.Length + nonce.Length];
        WriteHello(hello, ProtocolVersion, generation, peerIndex, token, OffersSharedMemory);
        var offer = hello.AsSpan(HelloSize(token.Length));
        offer[0] = (byte)name.Length;
        System.Text.Encoding.ASCII.GetBytes(name, offer[1..]);
        nonce.CopyTo(offer[(1 + name.Length)..]);
        return hello;
    }

    /// <summary>Reads the fixed part of a hello; false when it does not start with the hello magic.</summary>
    public static bool TryReadHello(ReadOnlySpan<byte> source, out Hello hello)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(source) != HelloMagic)
        {
            hello = default;
            return false;
        }

        hello = new Hello(
            BinaryPrimitives.ReadUInt16LittleEndian(source[4..]),
            BinaryPrimitives.ReadInt64LittleEndian(source[8..]),
            BinaryPrimitives.ReadInt32LittleEndian(source[16..]),
            BinaryPrimitives.ReadUInt16LittleEndian(source[6..]),
            BinaryPrimitives.ReadInt32LittleEndian(source[20..]));
        return true;
    }

    public static void WriteAnswer(Span<byte> destination, int status)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, AnswerMagic);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], status);
    }

    /// <summary>Reads an answer; false when it does not start with the answer magic.</summary>
    public static bool TryReadAnswer(ReadOnlySpan<byte> source, out int status)
    {
        status = BinaryPrimitives.ReadInt32LittleEndian(source[4..]);
        return BinaryPrimitives.ReadUInt32LittleEndian(source) == AnswerMagic;
    }

    public static void WriteFrameHeader(Span<byte> destination, ChunkKey key, int elementCount)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, FrameMagic);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], elementCount);
        key.Write(destination[8..]);
    }

    public static FrameHeader ReadFrameHeader(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(source),
        ChunkKey.Read(source[8..]),
        BinaryPrimitives.ReadInt32LittleEndian(source[4..]));

    /// <summary>
    /// Why a chunk may not travel on a connection of generation <paramref name="generation"/>, or null
    /// when it may. The sender checks its own chunks with the same rule the receiver applies, so a
    /// bad key fails the send instead of getting the connection closed by the other side.
    /// </summary>
    public static string? Problem(ChunkKey key, int elementCount, long generation, int peerCount, int maxChunkElements)
    {
        if (elementCount < 0 || elementCount > maxChunkElements)
        {
            return $"element count {elementCount} is outside 0..{maxChunkElements}";
        }

        if (key.Generation != generation)
        {
            return $"generation {key.Generation} is not the connection's generation {generation}";
        }

        int ringSteps = 2 * (peerCount - 1);
        if (key.RingStep < 0 || key.RingStep >= ringSteps)
        {
            return $"ring step {key.RingStep} is outside 0..{ringSteps - 1}";
        }

        if (key.Bucket < 0 || key.Lane < 0 || key.Chunk < 0)
        {
            return $"negative id (bucket {key.Bucket}, lane {key.Lane}, chunk {key.Chunk})";
        }

        return null;
    }
}
