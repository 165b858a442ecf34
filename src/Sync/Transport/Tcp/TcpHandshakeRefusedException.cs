namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>Why a peer refused a data-plane connection (sent in the handshake answer).</summary>
public enum TcpRefusalReason
{
    /// <summary>The peers speak different versions of the data-plane protocol.</summary>
    UnsupportedVersion = 1,

    /// <summary>The connecting peer is in another world generation.</summary>
    WrongGeneration = 2,

    /// <summary>The connecting peer is not this peer's left neighbour in the ring.</summary>
    UnexpectedPeer = 3,

    /// <summary>The connecting peer does not know this generation's token.</summary>
    WrongToken = 4,

    /// <summary>The left neighbour is already connected.</summary>
    AlreadyConnected = 5,
}

/// <summary>The right neighbour answered the handshake with a refusal; retrying will not help.</summary>
internal sealed class TcpHandshakeRefusedException : IOException
{
    public TcpHandshakeRefusedException(TcpRefusalReason reason, string message)
        : base(message)
    {
        Reason = reason;
    }

    /// <summary>What the refusing peer objected to.</summary>
    public TcpRefusalReason Reason { get; }
}
