using ActorTrain.Sync.Ring;

namespace ActorTrain.Sync.Tests.Ring;

public class RingScheduleTests
{
    public static TheoryData<int> PeerCounts() => [1, 2, 3, 4, 5, 6, 7, 8];

    [Theory]
    [MemberData(nameof(PeerCounts))]
    public void Each_peer_owns_a_distinct_segment_and_has_two_n_minus_two_steps(int n)
    {
        var schedules = Enumerable.Range(0, n).Select(p => RingSchedule.For(n, p)).ToArray();

        Assert.Equal(n, schedules.Select(s => s.OwnedSegment).Distinct().Count());
        foreach (var schedule in schedules)
        {
            Assert.Equal(2 * (n - 1), schedule.Steps.Count);
            Assert.Equal((schedule.PeerIndex + 1) % n, schedule.RightNeighbour);
            Assert.Equal((schedule.PeerIndex + n - 1) % n, schedule.LeftNeighbour);
            Assert.Equal(Enumerable.Range(0, 2 * (n - 1)), schedule.Steps.Select(s => s.Index));
            Assert.All(schedule.Steps.Take(n - 1), s => Assert.Equal(RingOp.Reduce, s.Op));
            Assert.All(schedule.Steps.Skip(n - 1), s => Assert.Equal(RingOp.Copy, s.Op));
        }
    }

    [Theory]
    [MemberData(nameof(PeerCounts))]
    public void Every_peer_receives_the_segment_its_left_neighbour_sends(int n)
    {
        var schedules = Enumerable.Range(0, n).Select(p => RingSchedule.For(n, p)).ToArray();

        foreach (var schedule in schedules)
        {
            var left = schedules[schedule.LeftNeighbour];
            for (int k = 0; k < schedule.Steps.Count; k++)
            {
                Assert.Equal(left.Steps[k].SendSegment, schedule.Steps[k].ReceiveSegment);
                Assert.NotEqual(schedule.Steps[k].SendSegment, schedule.Steps[k].ReceiveSegment);
            }
        }
    }

    [Theory]
    [MemberData(nameof(PeerCounts))]
    public void Simulating_the_schedule_on_arrays_yields_the_sum_on_every_peer(int n)
    {
        foreach (int length in new[] { 0, 1, n - 1, n, n + 1, (3 * n) + 2 })
        {
            // Integer-valued inputs keep the float sums exact, whatever the order.
            var buffers = Enumerable.Range(0, n)
                .Select(p => Enumerable.Range(0, length).Select(i => (float)((p * 1000) + i)).ToArray())
                .ToArray();
            var expected = Enumerable.Range(0, length).Select(i => buffers.Sum(b => b[i])).ToArray();
            var schedules = Enumerable.Range(0, n).Select(p => RingSchedule.For(n, p)).ToArray();

            for (int k = 0; k < 2 * (n - 1); k++)
            {
                // All peers send at once: snapshot what travels, then merge it at the receivers.
                var inFlight = schedules
                    .Select(s => Segment(buffers[s.PeerIndex], length, n, s.Steps[k].SendSegment).ToArray())
                    .ToArray();
                foreach (var schedule in schedules)
                {
                    var step = schedule.Steps[k];
                    var incoming = inFlight[schedule.LeftNeighbour];
                    var target = Segment(buffers[schedule.PeerIndex], length, n, step.ReceiveSegment);
                    for (int i = 0; i < target.Length; i++)
                    {
                        target[i] = step.Op == RingOp.Reduce ? target[i] + incoming[i] : incoming[i];
                    }
                }

                if (k == n - 2)
                {
                    foreach (var schedule in schedules)
                    {
                        Assert.Equal(
                            Segment(expected, length, n, schedule.OwnedSegment).ToArray(),
                            Segment(buffers[schedule.PeerIndex], length, n, schedule.OwnedSegment).ToArray());
                    }
                }
            }

            Assert.All(buffers, b => Assert.Equal(expected, b));
        }
    }

    [Fact]
    public void A_single_peer_has_no_steps()
    {
        var schedule = RingSchedule.For(1, 0);

        Assert.Empty(schedule.Steps);
        Assert.Equal(0, schedule.OwnedSegment);
        Assert.Equal(0, schedule.RightNeighbour);
        Assert.Equal(0, schedule.LeftNeighbour);
    }

    [Fact]
    public void Invalid_peers_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RingSchedule.For(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => RingSchedule.For(3, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => RingSchedule.For(3, -1));
    }

    private static Span<float> Segment(float[] buffer, int length, int n, int segment)
    {
        var (offset, count) = Partition.Slice(length, n, segment);
        return buffer.AsSpan(offset, count);
    }
}
