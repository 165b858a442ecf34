using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// One data-plane connection's byte stream: the socket itself, or TLS over it. The plain form
/// calls the socket directly, so the default path costs nothing for the option of TLS.
/// </summary>
internal abstract class DataPlaneConnection
{
    private int closed;

    /// <summary>Sends all of <paramref name="buffer"/>.</summary>
    public abstract ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>
    /// Fills <paramref name="buffer"/>. Returns false when the peer closed the connection before the
    /// first byte; throws <see cref="EndOfStreamException"/> when it closed part way through.
    /// </summary>
    public abstract ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Whether the bytes travel inside TLS.</summary>
    public abstract bool IsEncrypted { get; }

    public static DataPlaneConnection Plain(Socket socket) => new PlainConnection(socket);

    /// <summary>
    /// Runs the TLS handshake as the accepting side. Throws <see cref="AuthenticationException"/>
    /// naming what was wrong with the peer's certificate (or that it sent none); closes the socket
    /// on any failure.
    /// </summary>
    public static async Task<DataPlaneConnection> AcceptTlsAsync(Socket socket, TcpTlsOptions tls, CancellationToken cancellationToken)
    {
        string? refusal = null;
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsServerAsync(tls.ServerOptions(reason => refusal = reason), cancellationToken).ConfigureAwait(false);
            return new TlsConnection(socket, stream);
        }
        catch (AuthenticationException e) when (refusal is not null)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new AuthenticationException($"TLS refused: {refusal}", e);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Runs the TLS handshake as the connecting side; as <see cref="AcceptTlsAsync"/>.</summary>
    public static async Task<DataPlaneConnection> ConnectTlsAsync(Socket socket, TcpTlsOptions tls, int peer, CancellationToken cancellationToken)
    {
        string? refusal = null;
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsClientAsync(tls.ClientOptions(reason => refusal = reason), cancellationToken).ConfigureAwait(false);
            return new TlsConnection(socket, stream);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new AuthenticationException(refusal is not null
                ? $"TLS with peer {peer} failed: its {refusal}"
                : $"TLS with peer {peer} failed ({e.Message}); does it use TLS, and does this node's certificate chain to its CA?", e);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Closes the connection, telling the peer no more data comes; idempotent, never throws.</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref closed, 1) == 0)
        {
            CloseOnce();
        }
    }

    protected abstract void CloseOnce();

    private sealed class PlainConnection(Socket socket) : DataPlaneConnection
    {
        public override bool IsEncrypted => false;

        public override ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken) =>
            SocketIo.SendAllAsync(socket, buffer, cancellationToken);

        public override ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken cancellationToken) =>
            SocketIo.ReceiveExactlyAsync(socket, buffer, cancellationToken);

        protected override void CloseOnce() => SocketIo.Close(socket);
    }

    private sealed class TlsConnection(Socket socket, SslStream stream) : DataPlaneConnection
    {
        public override bool IsEncrypted => true;

        public override ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken) =>
            stream.WriteAsync(buffer, cancellationToken);

        public override async ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        {
            int received = await stream.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            if (received == buffer.Length)
            {
                return true;
            }

            return received == 0
                ? false
                : throw new EndOfStreamException($"The connection closed after {received} of {buffer.Length} expected bytes.");
        }

        protected override void CloseOnce()
        {
            // Shutting the socket down first ends reads and writes in progress on the stream.
            SocketIo.Close(socket);
            try
            {
                stream.Dispose();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
            {
                // The stream was mid-operation on a socket that is gone: nothing left to release.
            }
        }
    }
}
