using ActorTrain.Sync.Buckets;

namespace ActorTrain.Sync.Tests.Buckets;

public class BucketLayoutTests
{
    private static ParameterSpec[] Specs(params int[] counts) =>
        counts.Select((count, i) => new ParameterSpec($"p{i}", count)).ToArray();

    [Fact]
    public void Parameters_are_laid_out_in_reverse_model_order()
    {
        var layout = BucketLayout.Create(Specs(10, 20, 30), bucketCapacityBytes: 1 << 20);

        var bucket = Assert.Single(layout.Buckets);
        Assert.Equal(
            [new BucketEntry(2, 0, 30), new BucketEntry(1, 30, 20), new BucketEntry(0, 50, 10)],
            bucket.Entries);
        Assert.Equal(60, bucket.Length);
        Assert.Equal(60, layout.TotalElements);
    }

    [Fact]
    public void A_bucket_is_closed_before_the_next_parameter_would_exceed_the_capacity()
    {
        // 20 floats fit; p2 + p1 = 20 fill the first bucket exactly, p0 starts the second.
        var layout = BucketLayout.Create(Specs(10, 10, 10), bucketCapacityBytes: 20 * sizeof(float));

        Assert.Equal(2, layout.Buckets.Count);
        Assert.Equal([2, 1], layout.Buckets[0].Entries.Select(e => e.ParameterIndex));
        Assert.Equal([0], layout.Buckets[1].Entries.Select(e => e.ParameterIndex));
        Assert.Equal(0, layout.BucketOfParameter(2));
        Assert.Equal(0, layout.BucketOfParameter(1));
        Assert.Equal(1, layout.BucketOfParameter(0));
    }

    [Fact]
    public void A_parameter_larger_than_the_capacity_gets_a_bucket_of_its_own()
    {
        var layout = BucketLayout.Create(Specs(5, 100, 5), bucketCapacityBytes: 10 * sizeof(float));

        Assert.Equal(3, layout.Buckets.Count);
        Assert.Equal([2], layout.Buckets[0].Entries.Select(e => e.ParameterIndex));
        Assert.Equal([1], layout.Buckets[1].Entries.Select(e => e.ParameterIndex));
        Assert.Equal(100, layout.Buckets[1].Length);
        Assert.Equal([0], layout.Buckets[2].Entries.Select(e => e.ParameterIndex));
    }

    [Fact]
    public void Random_models_respect_the_capacity_and_place_every_parameter_once()
    {
        var random = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            var counts = Enumerable.Range(0, random.Next(1, 30)).Select(_ => random.Next(1, 500)).ToArray();
            long capacity = random.Next(1, 4000);
            var layout = BucketLayout.Create(Specs(counts), capacity);

            var seen = new List<int>();
            foreach (var bucket in layout.Buckets)
            {
                int offset = 0;
                foreach (var entry in bucket.Entries)
                {
                    Assert.Equal(offset, entry.Offset);
                    Assert.Equal(counts[entry.ParameterIndex], entry.Count);
                    Assert.Equal(bucket.Index, layout.BucketOfParameter(entry.ParameterIndex));
                    Assert.Equal(entry, layout.EntryOfParameter(entry.ParameterIndex));
                    offset += entry.Count;
                    seen.Add(entry.ParameterIndex);
                }

                Assert.Equal(offset, bucket.Length);
                Assert.True(
                    bucket.Entries.Count == 1 || (long)bucket.Length * sizeof(float) <= capacity,
                    $"bucket {bucket.Index} holds {bucket.Length} floats, over the capacity of {capacity} bytes");
            }

            // Reverse model order across all buckets, each parameter exactly once.
            Assert.Equal(Enumerable.Range(0, counts.Length).Reverse(), seen);
            Assert.Equal(counts.Sum(), layout.TotalElements);
        }
    }

    [Fact]
    public void Extra_elements_are_reserved_at_the_end_of_the_last_bucket()
    {
        var layout = BucketLayout.Create(Specs(10, 10, 10), bucketCapacityBytes: 20 * sizeof(float), extraElements: 1);

        Assert.Equal(1, layout.ExtraElements);
        Assert.Equal(new BucketPosition(1, 10), layout.ExtraOffset);
        Assert.Equal(11, layout.Buckets[1].Length);
        Assert.Equal(20, layout.Buckets[0].Length);
        Assert.Equal(31, layout.TotalElements);
    }

    [Fact]
    public void Without_extra_elements_the_extra_offset_points_past_the_last_parameter()
    {
        var layout = BucketLayout.Create(Specs(4, 6), bucketCapacityBytes: 1024);

        Assert.Equal(new BucketPosition(0, 10), layout.ExtraOffset);
        Assert.Equal(0, layout.ExtraElements);
    }

    [Fact]
    public void Flatten_then_unflatten_round_trips_every_parameter_and_leaves_the_extra_slot_alone()
    {
        int[] counts = [3, 17, 1, 40, 8];
        var layout = BucketLayout.Create(Specs(counts), bucketCapacityBytes: 30 * sizeof(float), extraElements: 2);
        var data = counts.Select((c, i) => TestData.RandomFloats(c, seed: 100 + i)).ToArray();
        var restored = counts.Select(c => new float[c]).ToArray();

        foreach (var bucket in layout.Buckets)
        {
            var buffer = new float[bucket.Length];
            Array.Fill(buffer, -7f);
            layout.Flatten(bucket.Index, p => data[p], buffer);

            foreach (var entry in bucket.Entries)
            {
                Assert.Equal(data[entry.ParameterIndex], buffer.AsSpan(entry.Offset, entry.Count).ToArray());
            }

            if (bucket.Index == layout.ExtraOffset.Bucket)
            {
                Assert.Equal([-7f, -7f], buffer.AsSpan(layout.ExtraOffset.Offset, 2).ToArray());
            }

            layout.Unflatten(bucket.Index, buffer, p => restored[p]);
        }

        for (int p = 0; p < counts.Length; p++)
        {
            Assert.Equal(data[p], restored[p]);
        }
    }

    [Fact]
    public void Flatten_rejects_a_buffer_or_parameter_of_the_wrong_length()
    {
        var layout = BucketLayout.Create(Specs(4, 6), bucketCapacityBytes: 1024);
        var data = new[] { new float[4], new float[6] };

        Assert.Throws<ArgumentException>(() => layout.Flatten(0, p => data[p], new float[9]));
        Assert.Throws<ArgumentException>(() => layout.Flatten(0, p => new float[5], new float[10]));
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.Flatten(1, p => data[p], new float[10]));
        Assert.Throws<ArgumentException>(() => layout.Unflatten(0, new float[10], p => new float[3]));
    }

    [Fact]
    public void Invalid_layouts_are_rejected_with_clear_messages()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BucketLayout.Create(Specs(4), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => BucketLayout.Create(Specs(4), -5));
        Assert.Throws<ArgumentOutOfRangeException>(() => BucketLayout.Create(Specs(4), 100, extraElements: -1));
        Assert.Throws<ArgumentException>(() => BucketLayout.Create([], 100));

        var empty = Assert.Throws<ArgumentException>(() => BucketLayout.Create([new("w", 4), new("b", 0)], 100));
        Assert.Contains("'b'", empty.Message);

        var duplicate = Assert.Throws<ArgumentException>(() => BucketLayout.Create([new("w", 4), new("w", 2)], 100));
        Assert.Contains("'w'", duplicate.Message);
        Assert.Contains("unique", duplicate.Message);

        Assert.Throws<ArgumentException>(() => BucketLayout.Create([new(" ", 4)], 100));
    }

    [Fact]
    public void Parameter_queries_reject_unknown_indices()
    {
        var layout = BucketLayout.Create(Specs(4), 100);

        Assert.Throws<ArgumentOutOfRangeException>(() => layout.BucketOfParameter(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.EntryOfParameter(-1));
    }
}
