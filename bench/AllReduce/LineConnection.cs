using System.Buffers;
using System.Net.Sockets;
using System.Text;

namespace ActorTrain.Bench.AllReduce;

/// <summary>What went wrong in the rendezvous of the multi-host mode, in words for the user.</summary>
internal sealed class RendezvousException(string message) : Exception(message);

/// <summary>
/// One TCP connection of the rendezvous, carrying UTF-8 lines ending in '\n'. Every read names the
/// longest line it accepts, so a stray or hostile peer cannot make the reader buffer without end.
/// </summary>
internal sealed class LineConnection : IDisposable
{
    private readonly Socket socket;
    private readonly NetworkStream stream;
    private readonly byte[] buffer = new byte[8192];
    private readonly SemaphoreSlim writing = new(1, 1);
    private int start;
    private int end;

    public LineConnection(Socket socket)
    {
        this.socket = socket;
        socket.NoDelay = true;
        stream = new NetworkStream(socket, ownsSocket: true);
        Remote = socket.RemoteEndPoint?.ToString() ?? "?";
    }

    /// <summary>The other end's address, for messages.</summary>
    public string Remote { get; }

    /// <summary>The next line without its '\n', or null when the other end closed the connection between lines.</summary>
    public async Task<string?> ReadLineAsync(int maxBytes, CancellationToken cancellationToken)
    {
        var line = new ArrayBufferWriter<byte>();
        while (true)
        {
            if (start == end)
            {
                start = 0;
                end = await stream.ReadAsync(buffer, cancellationToken);
                if (end == 0)
                {
                    return line.WrittenCount == 0 ? null : throw new RendezvousException($"{Remote} closed the connection in the middle of a line.");
                }
            }

            int newline = Array.IndexOf(buffer, (byte)'\n', start, end - start);
            int take = (newline < 0 ? end : newline) - start;
            if (line.WrittenCount + take > maxBytes)
            {
                throw new RendezvousException($"{Remote} sent a line longer than {maxBytes} bytes.");
            }

            line.Write(buffer.AsSpan(start, take));
            start += take;
            if (newline >= 0)
            {
                start++;
                return Encoding.UTF8.GetString(line.WrittenSpan).TrimEnd('\r');
            }
        }
    }

    public async Task WriteLineAsync(string line, CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(line + "\n");
        await writing.WaitAsync(cancellationToken);
        try
        {
            await stream.WriteAsync(bytes, cancellationToken);
        }
        finally
        {
            writing.Release();
        }
    }

    /// <summary>Best effort, for error reports: the other end may be gone already.</summary>
    public void TryWriteLine(string line)
    {
        try
        {
            WriteLineAsync(line.ReplaceLineEndings(" | "), CancellationToken.None).Wait(TimeSpan.FromSeconds(2));
        }
        catch (Exception)
        {
            // Nothing more to tell a peer that cannot be reached.
        }
    }

    public void Dispose()
    {
        stream.Dispose();
        socket.Dispose();
        writing.Dispose();
    }
}
