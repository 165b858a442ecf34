using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Compression;

/// <summary>
/// Float32 ↔ 16-bit conversions for the cross-node leg, and the packing that lets them travel
/// through <see cref="Transport.IRingTransport"/> unchanged.
/// </summary>
/// <remarks>
/// <para>
/// Packing: the transports move <c>ReadOnlyMemory&lt;float&gt;</c> and never look at the values
/// (both copy raw bytes). A chunk of n values is therefore encoded as n 16-bit halves stored two
/// per float slot: slot i holds the halves of values 2i and 2i+1 in memory order, and for odd n the
/// unused upper half of the last slot is zero. The transport sees <see cref="PackedLength"/> =
/// ⌈n/2⌉ "floats" (half the bytes); those slots are bit patterns, not numbers, and must only be
/// handed to <see cref="Decode"/> or <see cref="DecodeAdd"/>. Every node must share the byte order,
/// as for uncompressed float chunks.
/// </para>
/// <para>
/// fp16 is IEEE 754 binary16, bit for bit what <see cref="Half"/> casts give (round to nearest even; values beyond ±65504
/// become ±infinity, values below 2^-24 become ±0). bf16 keeps float32's top 16 bits, rounded to
/// nearest even; ±infinity stays infinite, a NaN stays a NaN (quiet, sign and top payload kept),
/// a finite value that rounds past the largest bf16 becomes infinity. Both are exact for every value
/// the format can represent, so <c>Encode(Decode(h)) == h</c> for every h this codec produced: a
/// decoded chunk forwarded unchanged goes on with the same bytes.
/// </para>
/// </remarks>
internal static class HalfCodec
{
    // Values per stack block when a conversion needs an intermediate (8 KiB of floats).
    private const int Block = 2048;

    /// <summary>Float slots that carry <paramref name="count"/> packed 16-bit values.</summary>
    public static int PackedLength(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return count / 2 + (count & 1);
    }

    /// <summary>Encodes <paramref name="values"/> into <paramref name="packed"/> (exactly <see cref="PackedLength"/> slots).</summary>
    public static void Encode(WireCompression compression, ReadOnlySpan<float> values, Span<float> packed)
    {
        RequirePacked(values.Length, packed.Length, nameof(packed));
        Span<ushort> halves = MemoryMarshal.Cast<float, ushort>(packed);
        EncodeHalves(compression, values, halves[..values.Length]);
        if ((values.Length & 1) == 1)
        {
            halves[values.Length] = 0; // the padding is part of the bytes on the wire: keep it defined
        }
    }

    /// <summary>Decodes <paramref name="packed"/> (<see cref="PackedLength"/> slots) into <paramref name="values"/>.</summary>
    public static void Decode(WireCompression compression, ReadOnlySpan<float> packed, Span<float> values)
    {
        RequirePacked(values.Length, packed.Length, nameof(packed));
        DecodeHalves(compression, MemoryMarshal.Cast<float, ushort>(packed)[..values.Length], values);
    }

    /// <summary><paramref name="accumulator"/>[i] += decoded value i: the sum stays float32.</summary>
    public static void DecodeAdd(WireCompression compression, ReadOnlySpan<float> packed, Span<float> accumulator)
    {
        RequirePacked(accumulator.Length, packed.Length, nameof(packed));
        ReadOnlySpan<ushort> halves = MemoryMarshal.Cast<float, ushort>(packed)[..accumulator.Length];
        Span<float> decoded = stackalloc float[Block];
        for (int i = 0; i < accumulator.Length; i += Block)
        {
            int n = Math.Min(Block, accumulator.Length - i);
            DecodeHalves(compression, halves.Slice(i, n), decoded[..n]);
            Span<float> target = accumulator.Slice(i, n);
            TensorPrimitives.Add(target, decoded[..n], target);
        }
    }

    /// <summary>
    /// Replaces every value by what a peer decodes from its encoding. The owner of a reduced chunk
    /// does this to its own copy, so that it holds exactly what every other peer decodes.
    /// </summary>
    public static void Round(WireCompression compression, Span<float> values)
    {
        Span<ushort> halves = stackalloc ushort[Block];
        for (int i = 0; i < values.Length; i += Block)
        {
            int n = Math.Min(Block, values.Length - i);
            Span<float> part = values.Slice(i, n);
            EncodeHalves(compression, part, halves[..n]);
            DecodeHalves(compression, halves[..n], part);
        }
    }

    /// <summary>bfloat16 bits of <paramref name="value"/>, rounded to nearest even (see the class remarks for NaN and infinity).</summary>
    public static ushort ToBFloat16Bits(float value) => (ushort)ToBFloat16(BitConverter.SingleToUInt32Bits(value));

    /// <summary>The float32 value of bfloat16 <paramref name="bits"/> (exact: bf16 is float32's upper half).</summary>
    public static float FromBFloat16Bits(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    private static void EncodeHalves(WireCompression compression, ReadOnlySpan<float> values, Span<ushort> halves)
    {
        ReadOnlySpan<uint> bits = MemoryMarshal.Cast<float, uint>(values);
        switch (compression)
        {
            case WireCompression.Fp16:
                EncodeLanes<Fp16Lanes>(bits, halves);
                break;
            case WireCompression.Bf16:
                EncodeLanes<Bf16Lanes>(bits, halves);
                break;
            default:
                throw NotCompressed(compression);
        }
    }

    private static void DecodeHalves(WireCompression compression, ReadOnlySpan<ushort> halves, Span<float> values)
    {
        Span<uint> bits = MemoryMarshal.Cast<float, uint>(values);
        switch (compression)
        {
            case WireCompression.Fp16:
                DecodeLanes<Fp16Lanes>(halves, bits);
                break;
            case WireCompression.Bf16:
                DecodeLanes<Bf16Lanes>(halves, bits);
                break;
            default:
                throw NotCompressed(compression);
        }
    }

    /// <summary>One 16-bit format's conversions, per vector lane and per value (the JIT specializes the loops below for each).</summary>
    private interface ILanes
    {
        /// <summary>float32 bits → 16-bit pattern in the low half of each lane.</summary>
        static abstract Vector<uint> Encode(Vector<uint> bits);

        static abstract ushort Encode(uint bits);

        /// <summary>16-bit pattern (one per lane) → float32 bits.</summary>
        static abstract Vector<uint> Decode(Vector<uint> halves);

        static abstract uint Decode(ushort half);
    }

    private static void EncodeLanes<TFormat>(ReadOnlySpan<uint> bits, Span<ushort> halves)
        where TFormat : ILanes
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int width = Vector<uint>.Count;
            for (; i + 2 * width <= bits.Length; i += 2 * width)
            {
                var low = TFormat.Encode(new Vector<uint>(bits.Slice(i, width)));
                var high = TFormat.Encode(new Vector<uint>(bits.Slice(i + width, width)));
                Vector.Narrow(low, high).CopyTo(halves.Slice(i, 2 * width));
            }
        }

        for (; i < bits.Length; i++)
        {
            halves[i] = TFormat.Encode(bits[i]);
        }
    }

    private static void DecodeLanes<TFormat>(ReadOnlySpan<ushort> halves, Span<uint> bits)
        where TFormat : ILanes
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int width = Vector<ushort>.Count;
            for (; i + width <= halves.Length; i += width)
            {
                Vector.Widen(new Vector<ushort>(halves.Slice(i, width)), out var low, out var high);
                TFormat.Decode(low).CopyTo(bits.Slice(i, width / 2));
                TFormat.Decode(high).CopyTo(bits.Slice(i + width / 2, width / 2));
            }
        }

        for (; i < halves.Length; i++)
        {
            bits[i] = TFormat.Decode(halves[i]);
        }
    }

    // fp16 by hand rather than TensorPrimitives.ConvertToHalf/ConvertToSingle: measured here (AVX2,
    // .NET 10) those ran at 2.8 and 1.2 GB/s of float32, and the ring decodes every chunk it receives.
    // The vector paths give the same bits as the Half casts (the tests compare them at and around
    // every half value); the scalar tails use the casts.
    private readonly struct Fp16Lanes : ILanes
    {
        public static ushort Encode(uint bits) => BitConverter.HalfToUInt16Bits((Half)BitConverter.UInt32BitsToSingle(bits));

        public static uint Decode(ushort half) => BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf(half));

        // float32 bits → binary16 bits, round to nearest even, per lane:
        // - normal halves (2^-14 ≤ |x| < 65520): rebias the exponent (127 → 15: add −112·2^23, i.e.
        //   0xC800_0000 modulo 2^32) and round the 13 dropped mantissa bits as for bf16 (0xFFF plus the
        //   lowest kept bit); a carry into the exponent is the correct rounding up;
        // - |x| < 2^-14 (half subnormals and zero): |x| + 0.5f is a float whose unit in the last place
        //   is 2^-24, the half subnormal step, so the FPU's own round-to-nearest-even leaves
        //   round(|x| / 2^-24) in its low bits (1024, the smallest normal, when it rounds up to 2^-14);
        // - 65520 ≤ |x| ≤ float.MaxValue rounds to infinity (65520 is the tie above 65504, whose
        //   mantissa is odd), infinity stays infinity, a NaN becomes a quiet NaN keeping its top payload bits.
        public static Vector<uint> Encode(Vector<uint> bits)
        {
            var magnitude = bits & new Vector<uint>(0x7FFF_FFFFu);
            var normal = (magnitude + new Vector<uint>(0xC800_0FFFu) + ((magnitude >> 13) & Vector<uint>.One)) >> 13;
            var tiny = Vector.AsVectorUInt32(Vector.AsVectorSingle(magnitude) + new Vector<float>(0.5f)) - new Vector<uint>(0x3F00_0000u);
            var isNaN = Vector.GreaterThan(magnitude, new Vector<uint>(0x7F80_0000u));
            var special = new Vector<uint>(0x7C00u) | (isNaN & (new Vector<uint>(0x0200u) | ((magnitude >> 13) & new Vector<uint>(0x03FFu))));
            var result = Vector.ConditionalSelect(Vector.LessThan(magnitude, new Vector<uint>(0x3880_0000u)), tiny, normal);
            result = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(magnitude, new Vector<uint>(0x477F_F000u)), special, result);
            return result | ((bits >> 16) & new Vector<uint>(0x8000u));
        }

        // binary16 bits (one per 32-bit lane) → float32 bits, exact: exponent and mantissa move up 13
        // bits; normal values rebias the exponent (+112·2^23), infinity and NaN get float32's all-ones
        // exponent (+224·2^23), and zero/subnormals (m·2^-24) are computed exactly as
        // (2^-14 + m·2^-24) − 2^-14.
        public static Vector<uint> Decode(Vector<uint> halves)
        {
            var shifted = (halves & new Vector<uint>(0x7FFFu)) << 13;
            var exponent = halves & new Vector<uint>(0x7C00u);
            var normal = shifted + new Vector<uint>(112u << 23);
            var special = shifted + new Vector<uint>(224u << 23);
            var tiny = Vector.AsVectorUInt32(Vector.AsVectorSingle(shifted + new Vector<uint>(113u << 23)) - new Vector<float>(1f / 16384));
            var result = Vector.ConditionalSelect(Vector.Equals(exponent, new Vector<uint>(0x7C00u)), special, normal);
            result = Vector.ConditionalSelect(Vector.Equals(exponent, Vector<uint>.Zero), tiny, result);
            return result | ((halves & new Vector<uint>(0x8000u)) << 16);
        }
    }

    private readonly struct Bf16Lanes : ILanes
    {
        public static ushort Encode(uint bits) => (ushort)ToBFloat16(bits);

        public static uint Decode(ushort half) => (uint)half << 16;

        public static Vector<uint> Encode(Vector<uint> bits) => ToBFloat16(bits);

        public static Vector<uint> Decode(Vector<uint> halves) => halves << 16;
    }

    // Round to nearest even on the 16 bits dropped: add 0x7FFF plus the lowest kept bit, then
    // truncate. A tie (dropped bits exactly 0x8000) carries only when the kept part is odd. The carry
    // may run into the exponent, which is right: it rounds up to the next binade, or to infinity past
    // the largest finite bf16. Infinity itself (mantissa 0) is unchanged. NaN must not be rounded (its
    // payload could carry into infinity or wrap): it is truncated with the quiet bit set, so it stays a NaN.
    private static uint ToBFloat16(uint bits)
    {
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
        {
            return (bits >> 16) | 0x0040u;
        }

        return (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    }

    private static Vector<uint> ToBFloat16(Vector<uint> bits)
    {
        var isNaN = Vector.GreaterThan(bits & new Vector<uint>(0x7FFF_FFFFu), new Vector<uint>(0x7F80_0000u));
        var rounded = (bits + new Vector<uint>(0x7FFFu) + ((bits >> 16) & Vector<uint>.One)) >> 16;
        var quietNaN = (bits >> 16) | new Vector<uint>(0x0040u);
        return Vector.ConditionalSelect(isNaN, quietNaN, rounded);
    }

    private static void RequirePacked(int count, int packedLength, string parameterName)
    {
        if (packedLength != PackedLength(count))
        {
            throw new ArgumentException(
                $"{count} values pack into {PackedLength(count)} float slots, but {packedLength} were given.", parameterName);
        }
    }

    private static ArgumentException NotCompressed(WireCompression compression) =>
        new($"{compression} is not a 16-bit wire format; only {WireCompression.Fp16} and {WireCompression.Bf16} are encoded.", nameof(compression));
}
