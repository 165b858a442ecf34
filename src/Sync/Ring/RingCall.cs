using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Ring;

/// <summary>Which part of a ring all-reduce one call runs.</summary>
internal enum RingPhases
{
    /// <summary>Reduce-scatter, then all-gather: every peer ends with the whole sum.</summary>
    Both,

    /// <summary>Only the reduce-scatter: each peer ends holding the sum of its owned segment.</summary>
    ReduceScatter,

    /// <summary>Only the all-gather: every peer's owned segment is copied to all the others.</summary>
    AllGather,
}

/// <summary>One call of <see cref="RingAllReduce"/>.</summary>
/// <param name="Key">Generation, step, bucket and lane of the chunks; its ring step and chunk are set per chunk.</param>
/// <param name="Compression">The wire format of the chunks.</param>
/// <param name="Phases">Which phases to run.</param>
internal readonly record struct RingCall(ChunkKey Key, WireCompression Compression = WireCompression.None, RingPhases Phases = RingPhases.Both);
