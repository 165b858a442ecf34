namespace ActorTrain.Sync;

/// <summary>
/// Splits a buffer into contiguous slices, one per participant. Every collective in this library
/// uses this one rule, so a slice index means the same element range on every peer.
/// </summary>
internal static class Partition
{
    /// <summary>
    /// Returns slice <paramref name="index"/> of <paramref name="length"/> elements split into
    /// <paramref name="parts"/> slices. Counts differ by at most one: the first
    /// <c>length % parts</c> slices get the extra element; when <paramref name="length"/> is
    /// smaller than <paramref name="parts"/> the trailing slices are empty.
    /// </summary>
    public static (int Offset, int Count) Slice(int length, int parts, int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(parts);
        if ((uint)index >= (uint)parts)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"Slice index must be in 0..{parts - 1}.");
        }

        int baseCount = length / parts;
        int withExtra = length % parts;
        int count = baseCount + (index < withExtra ? 1 : 0);
        int offset = (index * baseCount) + Math.Min(index, withExtra);
        return (offset, count);
    }
}
