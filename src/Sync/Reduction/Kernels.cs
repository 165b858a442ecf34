using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Reduction;

/// <summary>Element-wise kernels over float spans used by every collective (SIMD through TensorPrimitives).</summary>
internal static class Kernels
{
    // IEEE 754 single: a value is NaN or ±inf exactly when all exponent bits are set.
    private const int ExponentMask = 0x7F80_0000;

    /// <summary><paramref name="destination"/>[i] += <paramref name="source"/>[i].</summary>
    public static void Add(Span<float> destination, ReadOnlySpan<float> source)
    {
        RequireSameLength(destination.Length, source.Length, nameof(source));
        TensorPrimitives.Add(destination, source, destination);
    }

    /// <summary><paramref name="values"/>[i] *= <paramref name="factor"/>.</summary>
    public static void Scale(Span<float> values, float factor) =>
        TensorPrimitives.Multiply(values, factor, values);

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/>; both must have the same length.</summary>
    public static void CopyTo(ReadOnlySpan<float> source, Span<float> destination)
    {
        RequireSameLength(destination.Length, source.Length, nameof(source));
        source.CopyTo(destination);
    }

    /// <summary>True when no element is NaN, +inf or -inf (also for an empty span).</summary>
    public static bool AllFinite(ReadOnlySpan<float> values) =>
        // IsFiniteAll answers false for an empty span; nothing non-finite was contributed there.
        values.IsEmpty || TensorPrimitives.IsFiniteAll(values);

    /// <summary>Number of elements that are NaN, +inf or -inf.</summary>
    public static int CountNonFinite(ReadOnlySpan<float> values)
    {
        ReadOnlySpan<int> bits = MemoryMarshal.Cast<float, int>(values);
        int count = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated && bits.Length >= Vector<int>.Count)
        {
            var mask = new Vector<int>(ExponentMask);
            var lanes = Vector<int>.Zero;
            ReadOnlySpan<Vector<int>> vectors = MemoryMarshal.Cast<int, Vector<int>>(bits);
            foreach (var v in vectors)
            {
                // Equals yields -1 per matching lane, so subtracting counts the matches.
                lanes -= Vector.Equals(v & mask, mask);
            }

            count = Vector.Sum(lanes);
            i = vectors.Length * Vector<int>.Count;
        }

        for (; i < bits.Length; i++)
        {
            if ((bits[i] & ExponentMask) == ExponentMask)
            {
                count++;
            }
        }

        return count;
    }

    private static void RequireSameLength(int destinationLength, int sourceLength, string parameterName)
    {
        if (destinationLength != sourceLength)
        {
            throw new ArgumentException(
                $"Source has {sourceLength} elements but the destination has {destinationLength}; they must match.",
                parameterName);
        }
    }
}
