namespace ActorTrain.Sync.Tests;

public class PartitionTests
{
    public static TheoryData<int, int> Shapes()
    {
        var data = new TheoryData<int, int>();
        foreach (int parts in new[] { 1, 2, 3, 4, 7, 8, 16 })
        {
            foreach (int length in new[] { 0, 1, 2, 3, 5, 7, 8, 15, 16, 17, 100, 1001 })
            {
                data.Add(length, parts);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Slices_are_contiguous_and_cover_the_whole_length(int length, int parts)
    {
        int expectedOffset = 0;
        for (int i = 0; i < parts; i++)
        {
            var (offset, count) = Partition.Slice(length, parts, i);
            Assert.Equal(expectedOffset, offset);
            Assert.True(count >= 0);
            expectedOffset += count;
        }

        Assert.Equal(length, expectedOffset);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Slice_counts_differ_by_at_most_one_and_the_first_slices_get_the_remainder(int length, int parts)
    {
        var counts = Enumerable.Range(0, parts).Select(i => Partition.Slice(length, parts, i).Count).ToArray();
        Assert.True(counts.Max() - counts.Min() <= 1);
        for (int i = 0; i < parts; i++)
        {
            Assert.Equal((length / parts) + (i < length % parts ? 1 : 0), counts[i]);
        }
    }

    [Fact]
    public void Length_smaller_than_parts_gives_empty_trailing_slices()
    {
        Assert.Equal((0, 1), Partition.Slice(2, 4, 0));
        Assert.Equal((1, 1), Partition.Slice(2, 4, 1));
        Assert.Equal((2, 0), Partition.Slice(2, 4, 2));
        Assert.Equal((2, 0), Partition.Slice(2, 4, 3));
    }

    [Theory]
    [InlineData(-1, 2, 0)]
    [InlineData(10, 0, 0)]
    [InlineData(10, -3, 0)]
    [InlineData(10, 2, 2)]
    [InlineData(10, 2, -1)]
    public void Invalid_arguments_are_rejected(int length, int parts, int index)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Partition.Slice(length, parts, index));
    }
}
