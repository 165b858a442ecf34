using System.Buffers.Binary;

namespace ActorTrain.Sync.Transport;

/// <summary>
/// Identifies one chunk of one ring all-reduce. Every field is part of the match: a chunk is
/// delivered only to the receive that asks for exactly this key, so chunks of another
/// generation, step, bucket or lane can never be mixed into a reduction.
/// </summary>
/// <param name="Generation">World generation the step belongs to.</param>
/// <param name="Step">Global step number (broadcasts use negative numbers).</param>
/// <param name="Bucket">Bucket index within the step.</param>
/// <param name="Lane">Which cross-node ring: the local rank whose slice this is.</param>
/// <param name="RingStep">0..2(N-1)-1: reduce-scatter steps first, then all-gather steps.</param>
/// <param name="Chunk">Index of the chunk within the segment sent at this ring step.</param>
internal readonly record struct ChunkKey(long Generation, long Step, int Bucket, int Lane, int RingStep, int Chunk)
{
    /// <summary>The key of a whole collective call: its ring steps and chunks are numbered by the ring.</summary>
    public static ChunkKey Call(long generation, long step, int bucket, int lane) => new(generation, step, bucket, lane, 0, 0);

    /// <summary>Bytes of the key on the wire (both transports' frame headers carry it): generation, step, bucket, lane, ring step, chunk, little-endian.</summary>
    public const int WireSize = 32;

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteInt64LittleEndian(destination, Generation);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], Step);
        BinaryPrimitives.WriteInt32LittleEndian(destination[16..], Bucket);
        BinaryPrimitives.WriteInt32LittleEndian(destination[20..], Lane);
        BinaryPrimitives.WriteInt32LittleEndian(destination[24..], RingStep);
        BinaryPrimitives.WriteInt32LittleEndian(destination[28..], Chunk);
    }

    public static ChunkKey Read(ReadOnlySpan<byte> source) => new(
        Generation: BinaryPrimitives.ReadInt64LittleEndian(source),
        Step: BinaryPrimitives.ReadInt64LittleEndian(source[8..]),
        Bucket: BinaryPrimitives.ReadInt32LittleEndian(source[16..]),
        Lane: BinaryPrimitives.ReadInt32LittleEndian(source[20..]),
        RingStep: BinaryPrimitives.ReadInt32LittleEndian(source[24..]),
        Chunk: BinaryPrimitives.ReadInt32LittleEndian(source[28..]));
}

/// <summary>
/// Moves chunks of float data between the peers of a cross-node ring. Peers are numbered
/// 0..PeerCount-1 in ring order; the ring algorithm only ever sends to its right neighbour
/// and receives from its left one.
/// </summary>
internal interface IRingTransport
{
    /// <summary>This peer's position in the ring.</summary>
    int PeerIndex { get; }

    /// <summary>Number of peers in the ring.</summary>
    int PeerCount { get; }

    /// <summary>Largest number of floats one chunk may carry (e.g. to stay under a frame size).</summary>
    int MaxChunkElements { get; }

    /// <summary>Sends <paramref name="data"/> to <paramref name="peer"/>. The data may be reused by the caller as soon as the returned task completes.</summary>
    ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken);

    /// <summary>
    /// Waits for the chunk with <paramref name="key"/> from <paramref name="peer"/> and returns its data.
    /// The caller owns the data until it passes it to <see cref="Release"/>.
    /// </summary>
    ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken);

    /// <summary>
    /// Hands back a chunk returned by <see cref="ReceiveAsync"/> once the caller has consumed it, so the
    /// transport may reuse its memory for a later receive. Pass the memory exactly as received, at most
    /// once, and do not read it afterwards. Optional: a chunk never released is left to the garbage
    /// collector, and transports that do not pool ignore this (the default).
    /// </summary>
    void Release(ReadOnlyMemory<float> chunk)
    {
    }
}
