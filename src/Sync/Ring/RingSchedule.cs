namespace ActorTrain.Sync.Ring;

/// <summary>What a peer does with a segment it receives at one ring step.</summary>
internal enum RingOp
{
    /// <summary>Add the incoming values to the local segment (reduce-scatter phase).</summary>
    Reduce,

    /// <summary>Overwrite the local segment with the incoming, fully reduced values (all-gather phase).</summary>
    Copy,
}

/// <summary>One step of a ring all-reduce as seen by one peer.</summary>
/// <param name="Index">0..2(N-1)-1; also the <c>RingStep</c> of the chunks sent at this step.</param>
/// <param name="SendSegment">Segment sent to the right neighbour.</param>
/// <param name="ReceiveSegment">Segment received from the left neighbour.</param>
/// <param name="Op">How the received segment is merged.</param>
internal readonly record struct RingStep(int Index, int SendSegment, int ReceiveSegment, RingOp Op);

/// <summary>
/// The explicit schedule of a ring all-reduce over N peers with the buffer split into N segments
/// by <see cref="Partition"/>. N-1 reduce-scatter steps leave each peer owning one fully reduced
/// segment; N-1 all-gather steps pass the owned segments around so every peer ends with all of them.
/// </summary>
internal sealed class RingSchedule
{
    private RingSchedule(int peerCount, int peerIndex, IReadOnlyList<RingStep> steps)
    {
        PeerCount = peerCount;
        PeerIndex = peerIndex;
        Steps = steps;
        RightNeighbour = (peerIndex + 1) % peerCount;
        LeftNeighbour = (peerIndex + peerCount - 1) % peerCount;
        OwnedSegment = (peerIndex + 1) % peerCount;
    }

    /// <summary>Number of peers in the ring.</summary>
    public int PeerCount { get; }

    /// <summary>The peer this schedule is for.</summary>
    public int PeerIndex { get; }

    /// <summary>The peer every chunk is sent to.</summary>
    public int RightNeighbour { get; }

    /// <summary>The peer every chunk is received from.</summary>
    public int LeftNeighbour { get; }

    /// <summary>The segment this peer holds fully reduced after the reduce-scatter phase.</summary>
    public int OwnedSegment { get; }

    /// <summary>Number of reduce-scatter steps (the all-gather has as many).</summary>
    public int ReduceScatterStepCount => PeerCount - 1;

    /// <summary>All 2(N-1) steps in order: reduce-scatter first, then all-gather.</summary>
    public IReadOnlyList<RingStep> Steps { get; }

    /// <summary>The schedule of peer <paramref name="peerIndex"/> in a ring of <paramref name="peerCount"/>.</summary>
    public static RingSchedule For(int peerCount, int peerIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(peerCount);
        if ((uint)peerIndex >= (uint)peerCount)
        {
            throw new ArgumentOutOfRangeException(nameof(peerIndex), peerIndex, $"Peer index must be in 0..{peerCount - 1}.");
        }

        int n = peerCount;
        int p = peerIndex;
        var steps = new RingStep[2 * (n - 1)];
        for (int s = 0; s < n - 1; s++)
        {
            // Reduce-scatter: forward the segment accumulated so far, add the left neighbour's partial sum.
            steps[s] = new RingStep(s, Mod(p - s, n), Mod(p - s - 1, n), RingOp.Reduce);

            // All-gather: forward a complete segment, take the next complete one from the left.
            steps[n - 1 + s] = new RingStep(n - 1 + s, Mod(p + 1 - s, n), Mod(p - s, n), RingOp.Copy);
        }

        return new RingSchedule(n, p, Array.AsReadOnly(steps));
    }

    private static int Mod(int value, int modulus) => ((value % modulus) + modulus) % modulus;
}
