using ActorTrain.Sync.Compression;

namespace ActorTrain.Sync.Tests.Compression;

public class HalfCodecTests
{
    public static TheoryData<WireCompression> Formats() => new() { WireCompression.Fp16, WireCompression.Bf16 };

    [Fact]
    public void Every_fp16_value_survives_a_round_trip_bit_for_bit_and_NaN_stays_NaN()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float value = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            float back = RoundTrip(WireCompression.Fp16, value);
            if (float.IsNaN(value))
            {
                Assert.True(float.IsNaN(back), $"fp16 NaN 0x{bits:X4} came back as {back}");
            }
            else
            {
                Assert.Equal(BitConverter.SingleToUInt32Bits(value), BitConverter.SingleToUInt32Bits(back));
            }
        }
    }

    [Fact]
    public void Every_bf16_value_survives_a_round_trip_bit_for_bit_and_NaN_stays_NaN()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float value = HalfCodec.FromBFloat16Bits((ushort)bits);
            Assert.Equal(BitConverter.SingleToUInt32Bits(value), (uint)bits << 16);
            ushort encoded = HalfCodec.ToBFloat16Bits(value);
            if (float.IsNaN(value))
            {
                Assert.True(float.IsNaN(HalfCodec.FromBFloat16Bits(encoded)), $"bf16 NaN 0x{bits:X4} became 0x{encoded:X4}");
                Assert.Equal(bits & 0x8000, encoded & 0x8000);
            }
            else
            {
                Assert.Equal((ushort)bits, encoded);
                Assert.Equal(BitConverter.SingleToUInt32Bits(value), BitConverter.SingleToUInt32Bits(RoundTrip(WireCompression.Bf16, value)));
            }
        }
    }

    [Theory]
    [InlineData(0x3F80_0000u, 0x3F80)] // 1.0 exact
    [InlineData(0x3F80_7FFFu, 0x3F80)] // just below the tie: down
    [InlineData(0x3F80_8000u, 0x3F80)] // tie, kept part even: stays
    [InlineData(0x3F80_8001u, 0x3F81)] // just above the tie: up
    [InlineData(0x3F81_8000u, 0x3F82)] // tie, kept part odd: up to even
    [InlineData(0xBF81_8000u, 0xBF82)] // the same, negative
    [InlineData(0x3FFF_8000u, 0x4000)] // tie carrying into the exponent: 1.99609375 → 2
    [InlineData(0x7F7F_7FFFu, 0x7F7F)] // largest value that rounds to the largest finite bf16
    [InlineData(0x7F7F_FFFFu, 0x7F80)] // float.MaxValue rounds past the largest bf16: +inf
    [InlineData(0xFF7F_FFFFu, 0xFF80)] // -float.MaxValue: -inf
    [InlineData(0x7F80_0000u, 0x7F80)] // +inf
    [InlineData(0xFF80_0000u, 0xFF80)] // -inf
    [InlineData(0x7FC0_0000u, 0x7FC0)] // quiet NaN
    [InlineData(0x7F80_0001u, 0x7FC0)] // signalling NaN whose payload is all in the dropped half: still a NaN
    [InlineData(0x7FFF_FFFFu, 0x7FFF)] // NaN with a full payload: must not carry into a wrong value
    [InlineData(0xFFFF_FFFFu, 0xFFFF)]
    [InlineData(0x0000_0001u, 0x0000)] // smallest subnormal: rounds to +0
    [InlineData(0x8000_8000u, 0x8000)] // negative subnormal tie to even: -0
    [InlineData(0x0000_8001u, 0x0001)] // subnormal above the tie: smallest bf16 subnormal
    public void Bf16_rounds_to_nearest_even_and_keeps_infinity_and_NaN(uint floatBits, int expected)
    {
        float value = BitConverter.UInt32BitsToSingle(floatBits);
        Assert.Equal((ushort)expected, HalfCodec.ToBFloat16Bits(value));

        // The vectorized path must agree with the scalar one wherever the value sits in a span.
        var values = Enumerable.Repeat(value, 37).ToArray();
        var packed = new float[HalfCodec.PackedLength(values.Length)];
        HalfCodec.Encode(WireCompression.Bf16, values, packed);
        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<float, ushort>(packed.AsSpan());
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal((ushort)expected, halves[i]);
        }
    }

    [Theory]
    [InlineData(1f + (1f / 2048), 1f)] // tie between 1 and 1 + 2^-10, kept part even
    [InlineData(1f + (3f / 2048), 1f + (1f / 512))] // tie, kept part odd: up
    [InlineData(65519f, 65504f)] // below the tie at the top: largest finite half
    [InlineData(65520f, float.PositiveInfinity)] // tie at the top rounds to even: overflow
    [InlineData(-1e6f, float.NegativeInfinity)]
    [InlineData(1e-8f, 0f)] // below half the smallest subnormal (2^-25 ≈ 2.98e-8): zero
    public void Fp16_rounds_to_nearest_even_with_overflow_to_infinity(float value, float expected)
    {
        Assert.Equal(expected, RoundTrip(WireCompression.Fp16, value));
        Assert.Equal((float)(Half)value, RoundTrip(WireCompression.Fp16, value));
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Spans_of_any_length_match_the_scalar_conversion(WireCompression format)
    {
        var random = new Random(42);
        foreach (int length in new[] { 0, 1, 2, 15, 16, 17, 33, 4095, 4097 })
        {
            // Random bit patterns: every exponent, NaNs and infinities included.
            var values = Enumerable.Range(0, length).Select(_ => BitConverter.Int32BitsToSingle(random.Next() ^ (random.Next() << 1))).ToArray();
            var packed = new float[HalfCodec.PackedLength(length)];
            HalfCodec.Encode(format, values, packed);
            var decoded = new float[length];
            HalfCodec.Decode(format, packed, decoded);
            var rounded = values.ToArray();
            HalfCodec.Round(format, rounded);
            for (int i = 0; i < length; i++)
            {
                float reference = format == WireCompression.Fp16 ? (float)(Half)values[i] : HalfCodec.FromBFloat16Bits(HalfCodec.ToBFloat16Bits(values[i]));
                AssertSameValue(reference, decoded[i], $"{format} element {i} of {length} ({values[i]:R})");
                AssertSameValue(reference, rounded[i], $"{format} Round, element {i} of {length}");
            }
        }
    }

    [Fact]
    public void Fp16_vector_paths_match_the_Half_casts_at_every_half_value_and_around_it()
    {
        // Every half value, the float32 values just below, at and above the midpoint to its
        // neighbour (normal range), and the midpoints between subnormals: all rounding cases.
        var values = new List<float>();
        for (int h = 0; h <= ushort.MaxValue; h++)
        {
            float f = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            uint bits = BitConverter.SingleToUInt32Bits(f);
            values.Add(f);
            if (!float.IsFinite(f) || (bits & 0x7FFF_FFFF) < 0x3880_0000)
            {
                continue;
            }

            foreach (uint offset in new uint[] { 0x0FFF, 0x1000, 0x1001, 0x1FFF })
            {
                values.Add(BitConverter.UInt32BitsToSingle(bits + offset));
            }
        }

        for (int k = 0; k < 1024; k++)
        {
            values.Add((float)((k + 0.5) * Math.Pow(2, -24)));
            values.Add(-(float)((k + 0.5) * Math.Pow(2, -24)));
        }

        values.AddRange([65519.99f, 65520f, float.MaxValue, -float.MaxValue, float.Epsilon, BitConverter.UInt32BitsToSingle(0x7F80_0001)]);

        var input = values.ToArray();
        var packed = new float[HalfCodec.PackedLength(input.Length)];
        HalfCodec.Encode(WireCompression.Fp16, input, packed);
        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<float, ushort>(packed.AsSpan());
        var decoded = new float[input.Length];
        HalfCodec.Decode(WireCompression.Fp16, packed, decoded);
        for (int i = 0; i < input.Length; i++)
        {
            Half reference = (Half)input[i];
            if (Half.IsNaN(reference))
            {
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(halves[i])), $"{input[i]:R} should encode as a NaN");
                Assert.True(float.IsNaN(decoded[i]));
                continue;
            }

            if (BitConverter.HalfToUInt16Bits(reference) != halves[i])
            {
                Assert.Fail($"{input[i]:R} (0x{BitConverter.SingleToUInt32Bits(input[i]):X8}) encoded as 0x{halves[i]:X4}, the cast gives 0x{BitConverter.HalfToUInt16Bits(reference):X4}");
            }

            AssertSameValue((float)reference, decoded[i], $"decoding 0x{halves[i]:X4}");
        }
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Odd_lengths_pad_the_last_slot_with_zero_and_sizes_are_checked(WireCompression format)
    {
        Assert.Equal(0, HalfCodec.PackedLength(0));
        Assert.Equal(1, HalfCodec.PackedLength(1));
        Assert.Equal(2, HalfCodec.PackedLength(4));
        Assert.Equal(3, HalfCodec.PackedLength(5));

        var packed = new float[] { float.NaN, float.NaN, float.NaN };
        HalfCodec.Encode(format, [1f, 2f, 3f, 4f, 5f], packed);
        Assert.Equal(0, System.Runtime.InteropServices.MemoryMarshal.Cast<float, ushort>(packed.AsSpan())[5]);
        var back = new float[5];
        HalfCodec.Decode(format, packed, back);
        Assert.Equal(new[] { 1f, 2f, 3f, 4f, 5f }, back);

        Assert.Throws<ArgumentException>(() => HalfCodec.Encode(format, [1f, 2f, 3f], new float[1]));
        Assert.Throws<ArgumentException>(() => HalfCodec.Decode(format, new float[3], new float[3]));
        Assert.Throws<ArgumentException>(() => HalfCodec.Encode(WireCompression.None, [1f], new float[1]));
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void DecodeAdd_accumulates_in_float32(WireCompression format)
    {
        // 1 + 2^-12 is not representable in either 16-bit format; a float32 accumulator keeps it.
        const int length = 5000; // more than one internal block
        var accumulator = Enumerable.Repeat(1f / 4096, length).ToArray();
        var packed = new float[HalfCodec.PackedLength(length)];
        HalfCodec.Encode(format, Enumerable.Repeat(1f, length).ToArray(), packed);
        HalfCodec.DecodeAdd(format, packed, accumulator);
        Assert.All(accumulator, v => Assert.Equal(1f + (1f / 4096), v));
    }

    [Fact]
    public void Names_parse_case_insensitively_and_unknown_names_are_refused()
    {
        Assert.Equal(WireCompression.None, WireCompressionNames.Parse("none"));
        Assert.Equal(WireCompression.Fp16, WireCompressionNames.Parse("FP16"));
        Assert.Equal(WireCompression.Bf16, WireCompressionNames.Parse(" bf16 "));
        Assert.All(Enum.GetValues<WireCompression>(), c => Assert.Equal(c, WireCompressionNames.Parse(c.ToName())));
        var error = Assert.Throws<ArgumentException>(() => WireCompressionNames.Parse("fp8"));
        Assert.Contains("fp16 | bf16", error.Message);
        Assert.False(WireCompressionNames.TryParse(null, out _));
    }

    private static float RoundTrip(WireCompression format, float value)
    {
        var packed = new float[1];
        HalfCodec.Encode(format, [value], packed);
        var back = new float[1];
        HalfCodec.Decode(format, packed, back);
        return back[0];
    }

    private static void AssertSameValue(float expected, float actual, string what)
    {
        if (float.IsNaN(expected))
        {
            Assert.True(float.IsNaN(actual), $"{what}: expected NaN, got {actual}");
        }
        else if (BitConverter.SingleToUInt32Bits(expected) != BitConverter.SingleToUInt32Bits(actual))
        {
            Assert.Fail($"{what}: expected {expected:R}, got {actual:R}");
        }
    }
}
