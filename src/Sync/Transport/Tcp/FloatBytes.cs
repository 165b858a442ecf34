using System.Buffers;
using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// A reusable byte view of float memory, so a socket can send from (or receive straight into) a
/// float buffer without copying it into a byte[] first. <c>MemoryMarshal.AsBytes</c> does this
/// for spans; sockets take <see cref="Memory{T}"/>, which has no such cast, hence this manager.
/// One view serves one operation at a time.
/// </summary>
internal sealed class FloatBytes : MemoryManager<byte>
{
    private Memory<float> floats;
    private MemoryHandle pinned;
    private int pinCount;

    /// <summary>Points the view at <paramref name="source"/> and returns it as bytes.</summary>
    public Memory<byte> Over(ReadOnlyMemory<float> source)
    {
        floats = MemoryMarshal.AsMemory(source);
        return Memory;
    }

    /// <summary>Lets go of the memory last viewed.</summary>
    public void Clear()
    {
        floats = default;
    }

    public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(floats.Span);

    public override unsafe MemoryHandle Pin(int elementIndex = 0)
    {
        if (pinCount++ == 0)
        {
            pinned = floats.Pin();
        }

        return new MemoryHandle((byte*)pinned.Pointer + elementIndex, default, this);
    }

    public override void Unpin()
    {
        if (--pinCount == 0)
        {
            pinned.Dispose();
            pinned = default;
        }
    }

    protected override void Dispose(bool disposing)
    {
    }
}
