namespace ActorTrain.Cluster.Metrics;

/// <summary>
/// Values of the <c>transport</c> label of <c>actortrain_transport_bytes_total</c>. Label values
/// are a closed set: every distinct value is a time series kept forever by Prometheus.
/// </summary>
internal static class TransportLabel
{
    /// <summary>Gradient chunks sent as Akka remoting messages.</summary>
    public const string Akka = "akka";

    /// <summary>Gradient chunks over a dedicated TCP connection.</summary>
    public const string Tcp = "tcp";
}

/// <summary>Values of the <c>reason</c> label of <c>actortrain_dropped_messages_total</c>.</summary>
internal static class DropReason
{
    /// <summary>Could not be decoded, or its fields are out of range (no payload, negative ids, a payload that is not whole floats).</summary>
    public const string Malformed = "malformed";

    /// <summary>Belongs to an older generation of the world.</summary>
    public const string Stale = "stale";

    /// <summary>A chunk already delivered for the same key.</summary>
    public const string Duplicate = "duplicate";

    /// <summary>Larger than the configured chunk size.</summary>
    public const string Oversized = "oversized";

    /// <summary>From a peer index outside the current world.</summary>
    public const string UnknownPeer = "unknown_peer";

    /// <summary>A control message without a valid tag for this node's cluster secret.</summary>
    public const string BadSecret = "bad_secret";

    /// <summary>A gradient chunk whose sender's address is not that of the peer it claims to come from.</summary>
    public const string WrongSender = "wrong_sender";

    /// <summary>A gradient chunk beyond the bytes a node holds for one peer before its reduction asks for them.</summary>
    public const string PendingLimit = "pending_limit";

    /// <summary>A gradient chunk of a generation more than one ahead of this node's: no peer can be that far ahead.</summary>
    public const string FutureGeneration = "future_generation";

    /// <summary>A TCP data-plane connection closed at its handshake (garbage, wrong token, generation or peer, a host other than the left neighbour's, a failed TLS handshake).</summary>
    public const string RejectedConnection = "rejected_connection";

    /// <summary>A TCP data-plane frame not delivered: malformed, cut off, duplicate or stale.</summary>
    public const string DroppedFrame = "dropped_frame";

    /// <summary>The reasons exported at 0 from the start, so a rate query sees them before the first drop.</summary>
    public static readonly IReadOnlyList<string> Known = [Malformed, Stale, Duplicate, Oversized, UnknownPeer, BadSecret, WrongSender, PendingLimit, FutureGeneration, RejectedConnection, DroppedFrame];
}
