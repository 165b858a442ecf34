using System.Net.Sockets;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>Whole-buffer reads and writes on a stream socket.</summary>
internal static class SocketIo
{
    /// <summary>Sends all of <paramref name="buffer"/>.</summary>
    public static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            int sent = await socket.SendAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            buffer = buffer[sent..];
        }
    }

    /// <summary>
    /// Fills <paramref name="buffer"/>. Returns false when the peer closed the connection before the
    /// first byte; throws <see cref="EndOfStreamException"/> when it closed part way through.
    /// </summary>
    public static async ValueTask<bool> ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            int count = await socket.ReceiveAsync(buffer[received..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (count == 0)
            {
                if (received == 0)
                {
                    return false;
                }

                throw new EndOfStreamException($"The connection closed after {received} of {buffer.Length} expected bytes.");
            }

            received += count;
        }

        return true;
    }

    /// <summary>Closes a socket, first telling the peer no more data comes, without throwing.</summary>
    public static void Close(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed or reset by the peer: nothing left to tell it.
        }

        socket.Dispose();
    }
}
