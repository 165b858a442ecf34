using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// The sending half of one data-plane connection. Writes are serialized (one frame at a time, in
/// the order the callers get the lock) and allocate nothing per chunk: header and payload go out
/// together from a reused buffer, or, for payloads above 256 KiB, the payload is sent from the
/// caller's memory after the header. A frame that was cut off (cancelled or failed part way) leaves the peer's stream
/// out of step, so the connection is then closed for good and later sends fail.
/// </summary>
internal sealed class TcpFrameWriter : IDisposable
{
    // Payloads up to this size are copied behind the header and go out in one send: a header sent
    // alone (TCP_NODELAY is on) is a packet of its own and an extra wake-up for the receiver, which
    // costs more than copying the floats. Larger payloads are sent from the caller's memory.
    private const int MaxCoalesceBytes = 256 * 1024;

    private readonly DataPlaneConnection connection;
    private readonly SemaphoreSlim writeLock = new(1, 1);
    private readonly byte[] frame;
    private readonly int coalesceBytes;
    private readonly FloatBytes payloadView = new();
    private readonly Lock gate = new();
    private Exception? fault;
    private bool disposed;
    private long bytesWritten;

    public TcpFrameWriter(DataPlaneConnection connection, int peer, int maxChunkElements)
    {
        this.connection = connection;
        Peer = peer;
        coalesceBytes = (int)Math.Min(MaxCoalesceBytes, (long)maxChunkElements * sizeof(float));
        frame = new byte[TcpWireFormat.FrameHeaderSize + coalesceBytes];
    }

    /// <summary>The peer at the other end.</summary>
    public int Peer { get; }

    /// <summary>Frame bytes (headers and payloads) handed to the socket.</summary>
    public long BytesWritten => Interlocked.Read(ref bytesWritten);

    public async ValueTask WriteAsync(ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
    {
        await writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfBroken();
            cancellationToken.ThrowIfCancellationRequested();
            int payloadBytes = data.Length * sizeof(float);
            TcpWireFormat.WriteFrameHeader(frame, key, data.Length);
            try
            {
                if (payloadBytes <= coalesceBytes)
                {
                    MemoryMarshal.AsBytes(data.Span).CopyTo(frame.AsSpan(TcpWireFormat.FrameHeaderSize));
                    await connection.SendAllAsync(frame.AsMemory(0, TcpWireFormat.FrameHeaderSize + payloadBytes), cancellationToken)
                        .ConfigureAwait(false);
                }
                else
                {
                    await connection.SendAllAsync(frame.AsMemory(0, TcpWireFormat.FrameHeaderSize), cancellationToken).ConfigureAwait(false);
                    await connection.SendAllAsync(payloadView.Over(data), cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException or IOException)
            {
                Break(e);
                if (e is OperationCanceledException && cancellationToken.IsCancellationRequested)
                {
                    throw;
                }

                ThrowIfBroken();
                throw;
            }
            finally
            {
                payloadView.Clear();
            }

            Interlocked.Add(ref bytesWritten, TcpWireFormat.FrameHeaderSize + (long)payloadBytes);
        }
        finally
        {
            writeLock.Release();
        }
    }

    /// <summary>Closes the connection; writes in progress or waiting fail with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed)
            {
                return;
            }

            disposed = true;
        }

        connection.Close();
    }

    private void Break(Exception cause)
    {
        lock (gate)
        {
            fault ??= cause;
        }

        connection.Close();
    }

    private void ThrowIfBroken()
    {
        Exception? cause;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            cause = fault;
        }

        if (cause is not null)
        {
            throw new IOException(
                $"The data-plane connection to peer {Peer} is closed ({cause.GetType().Name}: {cause.Message}); " +
                "a frame may have been cut off, so it cannot be used again.", cause);
        }
    }
}
