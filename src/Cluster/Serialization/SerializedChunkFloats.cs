using System.Buffers;
using System.Runtime.InteropServices;

namespace ActorTrain.Cluster.Serialization;

/// <summary>
/// The floats of a chunk already written in its wire form (<see cref="GradientChunkSerializer.Prepare"/>),
/// seen as float memory: the message reads its values from the same array that goes on the wire,
/// so sending makes one copy of them and serializing none. Little-endian hosts only (the wire
/// order is the memory order there).
/// </summary>
internal sealed class SerializedChunkFloats : MemoryManager<float>
{
    public SerializedChunkFloats(byte[] serialized)
    {
        Serialized = serialized;
    }

    /// <summary>The whole serialized chunk: header, then the floats this memory shows.</summary>
    public byte[] Serialized { get; }

    public override Span<float> GetSpan() =>
        MemoryMarshal.Cast<byte, float>(Serialized.AsSpan(GradientChunkSerializer.HeaderSize));

    public override unsafe MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, (Serialized.Length - GradientChunkSerializer.HeaderSize) / sizeof(float));
        var handle = GCHandle.Alloc(Serialized, GCHandleType.Pinned);
        var first = (byte*)handle.AddrOfPinnedObject() + GradientChunkSerializer.HeaderSize + (long)elementIndex * sizeof(float);
        // Disposing the handle frees the GCHandle; nothing else to undo.
        return new MemoryHandle(first, handle);
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
