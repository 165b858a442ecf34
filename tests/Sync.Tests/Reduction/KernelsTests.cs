using ActorTrain.Sync.Reduction;

namespace ActorTrain.Sync.Tests.Reduction;

public class KernelsTests
{
    private static readonly float[] NonFiniteValues = [float.NaN, float.PositiveInfinity, float.NegativeInfinity];

    public static TheoryData<int> Lengths() => [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 1031];

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Add_sums_element_wise_into_the_destination(int length)
    {
        var destination = TestData.RandomFloats(length, seed: 1);
        var source = TestData.RandomFloats(length, seed: 2);
        var expected = destination.Zip(source, (a, b) => a + b).ToArray();

        Kernels.Add(destination, source);

        Assert.Equal(expected, destination);
    }

    [Fact]
    public void Scale_multiplies_every_element()
    {
        var values = TestData.RandomFloats(1000, seed: 3);
        var expected = values.Select(v => v * 0.25f).ToArray();

        Kernels.Scale(values, 0.25f);

        Assert.Equal(expected, values);
    }

    [Fact]
    public void CopyTo_copies_all_elements()
    {
        var source = TestData.RandomFloats(77, seed: 4);
        var destination = new float[77];

        Kernels.CopyTo(source, destination);

        Assert.Equal(source, destination);
    }

    [Fact]
    public void Length_mismatch_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => Kernels.Add(new float[3], new float[4]));
        Assert.Throws<ArgumentException>(() => Kernels.CopyTo(new float[3], new float[2]));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void A_non_finite_value_is_found_at_every_position(int length)
    {
        var values = TestData.RandomFloats(length, seed: length);
        Assert.True(Kernels.AllFinite(values));
        Assert.Equal(0, Kernels.CountNonFinite(values));

        for (int position = 0; position < length; position++)
        {
            foreach (var bad in NonFiniteValues)
            {
                float saved = values[position];
                values[position] = bad;
                Assert.False(Kernels.AllFinite(values), $"{bad} at {position} of {length} was not detected");
                Assert.Equal(1, Kernels.CountNonFinite(values));
                values[position] = saved;
            }
        }
    }

    [Fact]
    public void Extreme_finite_values_count_as_finite()
    {
        float[] values = [float.MaxValue, float.MinValue, float.Epsilon, -float.Epsilon, 0f, -0f, 1e-40f, 3.4e38f];

        Assert.True(Kernels.AllFinite(values));
        Assert.Equal(0, Kernels.CountNonFinite(values));
    }

    [Fact]
    public void CountNonFinite_counts_every_non_finite_value()
    {
        var values = TestData.RandomFloats(100_003, seed: 5);
        var random = new Random(6);
        for (int i = 0; i < 500; i++)
        {
            values[random.Next(values.Length)] = NonFiniteValues[i % NonFiniteValues.Length];
        }

        // 100003 is not a multiple of any vector width, so this one sits in the scalar tail.
        values[^1] = float.NaN;

        Assert.Equal(values.Count(v => !float.IsFinite(v)), Kernels.CountNonFinite(values));
        Assert.False(Kernels.AllFinite(values));
    }

    [Fact]
    public void Empty_input_is_finite()
    {
        Assert.True(Kernels.AllFinite([]));
        Assert.Equal(0, Kernels.CountNonFinite([]));
    }
}
