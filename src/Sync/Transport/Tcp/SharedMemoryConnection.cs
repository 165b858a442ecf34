namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// A data-plane connection between two processes on one host whose bytes go through a
/// <see cref="SharedMemoryRing"/> instead of the socket. The handshaken connection stays open and
/// carries only one-byte wake-ups: to the reader when bytes arrive while it sleeps, and to the writer
/// when room frees while it sleeps. Neither side sends a wake-up the other is not waiting for, so a
/// busy hop makes no system calls. The connection's end (a closed socket, a crashed peer) shows as
/// it does on TCP: a waiting side reads the end of the wake-up stream.
/// </summary>
internal sealed class SharedMemoryConnection : DataPlaneConnection
{
    private static readonly byte[] WakeUp = [1];

    private readonly DataPlaneConnection signals;
    private readonly SharedMemoryRing ring;
    private readonly byte[] woken = new byte[1];

    /// <summary>Wraps <paramref name="signals"/>, the connection the handshake ran on; the connection owns both from here on.</summary>
    public SharedMemoryConnection(DataPlaneConnection signals, SharedMemoryRing ring)
    {
        this.signals = signals;
        this.ring = ring;
    }

    /// <inheritdoc />
    public override bool IsEncrypted => signals.IsEncrypted;

    /// <inheritdoc />
    /// <remarks>One writer at a time (the frame writer serializes its sends).</remarks>
    public override async ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int written = ring.Write(buffer.Span, out bool wakeReader);
            if (written > 0)
            {
                buffer = buffer[written..];
                if (wakeReader)
                {
                    await signals.SendAllAsync(WakeUp, cancellationToken).ConfigureAwait(false);
                }

                continue;
            }

            if (ring.PrepareWriterWait() && !await signals.ReceiveExactlyAsync(woken, cancellationToken).ConfigureAwait(false))
            {
                throw new IOException("The peer closed the shared-memory connection while this side waited for room in the ring.");
            }
        }
    }

    /// <inheritdoc />
    /// <remarks>One reader at a time (the transport's receive loop).</remarks>
    public override async ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int read = ring.Read(buffer.Span[received..], out bool wakeWriter);
            if (read > 0)
            {
                received += read;
                if (wakeWriter)
                {
                    await signals.SendAllAsync(WakeUp, cancellationToken).ConfigureAwait(false);
                }

                continue;
            }

            if (ring.PrepareReaderWait() && !await signals.ReceiveExactlyAsync(woken, cancellationToken).ConfigureAwait(false))
            {
                // The writer wakes a waiting reader before it can close, so nothing written is left behind.
                return received == 0
                    ? false
                    : throw new EndOfStreamException($"The connection closed after {received} of {buffer.Length} expected bytes.");
            }
        }

        return true;
    }

    protected override void CloseOnce()
    {
        // Closing the socket first ends a wait for a wake-up; the ring's copies in progress finish before it unmaps.
        signals.Close();
        ring.Dispose();
    }
}
