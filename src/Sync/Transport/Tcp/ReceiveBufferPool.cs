using System.Numerics;
using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// The arrays one <see cref="TcpRingTransport"/> reads received chunks into, reused once the ring has
/// released them. A request for n floats gets an array of the next power of two at or above n, capped
/// at the transport's largest chunk, so full chunks use arrays of exactly that size (which
/// <see cref="TcpRingTransport.RecommendedMaxChunkElements"/> keeps off the large object heap) and a
/// segment's shorter last chunk wastes at most half its array. The pool knows every array it has lent:
/// returning one twice, or one it never lent, throws instead of letting two readers share an array.
/// After <see cref="Close"/> returned arrays are no longer kept (the garbage collector takes them).
/// </summary>
internal sealed class ReceiveBufferPool
{
    /// <summary>Smallest array the pool hands out (shorter chunks still get one of these).</summary>
    private const int MinArrayLength = 256;

    /// <summary>Bytes of free arrays kept per size class; what is returned beyond this is dropped.</summary>
    private const long RetainedBytesPerClass = 64L << 20;

    private readonly Lock gate = new();
    private readonly int maxArrayLength;
    private readonly Stack<float[]>?[] free = new Stack<float[]>?[32];
    private readonly HashSet<float[]> lent = new(ReferenceEqualityComparer.Instance);
    private bool closed;
    private long rented;
    private long allocated;
    private long dropped;

    public ReceiveBufferPool(int maxArrayLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxArrayLength);
        this.maxArrayLength = maxArrayLength;
    }

    /// <summary>Arrays handed out (new or reused).</summary>
    public long Rented
    {
        get { lock (gate) { return rented; } }
    }

    /// <summary>Arrays the pool had to allocate because none of the size was free.</summary>
    public long Allocated
    {
        get { lock (gate) { return allocated; } }
    }

    /// <summary>Arrays handed out and not returned yet.</summary>
    public int Outstanding
    {
        get { lock (gate) { return lent.Count; } }
    }

    /// <summary>Returned arrays not kept (the class was full, or the pool closed).</summary>
    public long Dropped
    {
        get { lock (gate) { return dropped; } }
    }

    /// <summary>Lends an array of at least <paramref name="length"/> floats (at most the pool's largest).</summary>
    public float[] Rent(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, maxArrayLength);
        int size = ArrayLength(length);
        int sizeClass = SizeClass(size);
        float[]? array = null;
        lock (gate)
        {
            rented++;
            if (free[sizeClass] is { Count: > 0 } stack)
            {
                array = stack.Pop();
            }
            else
            {
                allocated++;
            }
        }

        // Allocated outside the lock; the socket overwrites every element that is read.
        array ??= GC.AllocateUninitializedArray<float>(size);
        lock (gate)
        {
            lent.Add(array);
        }

        return array;
    }

    /// <summary>
    /// Takes back the array under <paramref name="chunk"/> (a slice from its start, as a receive hands
    /// it out). Empty memory is ignored. Throws when the memory is not an array this pool lent, or was
    /// returned already.
    /// </summary>
    public void Return(ReadOnlyMemory<float> chunk)
    {
        if (chunk.IsEmpty)
        {
            return;
        }

        if (!MemoryMarshal.TryGetArray(chunk, out var segment) || segment.Array is null || segment.Offset != 0)
        {
            throw new ArgumentException("The chunk is not one this transport received.", nameof(chunk));
        }

        var array = segment.Array;
        lock (gate)
        {
            if (!lent.Remove(array))
            {
                throw new InvalidOperationException(
                    "The chunk was released already, or is not one this transport received; a received chunk is released exactly once.");
            }

            int sizeClass = SizeClass(array.Length);
            var stack = free[sizeClass] ??= new Stack<float[]>();
            if (closed || (long)(stack.Count + 1) * array.Length * sizeof(float) > Math.Max(RetainedBytesPerClass, (long)array.Length * sizeof(float)))
            {
                dropped++;
                return;
            }

            stack.Push(array);
        }
    }

    /// <summary>Lets go of every free array and keeps none returned from now on.</summary>
    public void Close()
    {
        lock (gate)
        {
            closed = true;
            Array.Clear(free);
        }
    }

    /// <summary>Length of the array a request for <paramref name="length"/> floats gets.</summary>
    internal int ArrayLength(int length) =>
        (int)Math.Min(BitOperations.RoundUpToPowerOf2((uint)Math.Max(length, MinArrayLength)), (uint)maxArrayLength);

    // Powers of two below the largest size are classes 8..25; the largest size (a power of two or not) is the last class.
    private int SizeClass(int arrayLength) => arrayLength == maxArrayLength ? 31 : BitOperations.Log2((uint)arrayLength);
}
