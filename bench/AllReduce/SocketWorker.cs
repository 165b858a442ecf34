using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The ceiling: rank 0 writes the whole buffer into one blocking TCP stream, rank 1 reads it. No
/// framing, no reduction, no async machinery — what one loopback connection between two processes
/// moves on this machine. Per iteration: rank 1 signals ready (1 byte), rank 0 starts its clock,
/// sends, and stops it when rank 1's 1-byte acknowledgement of the last byte arrives.
/// </summary>
internal sealed class SocketWorker : IWorkerRun
{
    private readonly RunSpec spec;
    private readonly int rank;
    private readonly TcpListener? listener;
    private Socket? socket;

    public SocketWorker(RunSpec spec, int rank)
    {
        if (rank > 1) throw new ArgumentOutOfRangeException(nameof(rank), "The socket ceiling runs between ranks 0 and 1.");
        this.spec = spec;
        this.rank = rank;
        if (rank == 1)
        {
            listener = new TcpListener(spec.Bind, 0);
            listener.Start();
        }
    }

    public string Address => listener is null ? "-" : ((IPEndPoint)listener.LocalEndpoint).ToString();

    public async Task ConnectAsync(string token, IReadOnlyList<string> peers, CancellationToken cancellationToken)
    {
        if (rank == 0)
        {
            socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(IPEndPoint.Parse(peers[1]), cancellationToken);
        }
        else
        {
            socket = await listener!.AcceptSocketAsync(cancellationToken);
            listener.Stop();
        }

        socket.NoDelay = true;
        int timeoutMs = (int)Math.Min(int.MaxValue, spec.Timeout.TotalMilliseconds);
        socket.SendTimeout = timeoutMs;
        socket.ReceiveTimeout = timeoutMs;
    }

    public Task<WorkerResult> MeasureAsync(CancellationToken cancellationToken) =>
        Task.Factory.StartNew(() => Measure(cancellationToken), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private WorkerResult Measure(CancellationToken cancellationToken)
    {
        var s = socket ?? throw new InvalidOperationException("Not connected.");
        var floats = rank == 0 ? RingMeasurement.Pattern(spec.Floats, rank: 0) : new float[spec.Floats];
        var bytes = MemoryMarshal.AsBytes(floats.AsSpan());
        var expected = rank == 1 ? RingMeasurement.ExpectedSum(spec.Floats, peers: 1) : [];
        var signal = new byte[1];
        var times = new List<double>(spec.Iterations);
        int total = spec.Warmup + spec.Iterations;
        for (int iteration = 0; iteration < total; iteration++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (rank == 0)
            {
                ReceiveExactly(s, signal);
                long start = Stopwatch.GetTimestamp();
                SendAll(s, bytes);
                ReceiveExactly(s, signal);
                if (iteration >= spec.Warmup)
                {
                    times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                }
            }
            else
            {
                bytes.Clear();
                SendAll(s, signal);
                ReceiveExactly(s, bytes);
                SendAll(s, signal);

                // What rank 0 sends is its own input, i.e. the "sum" over one peer.
                RingMeasurement.Verify(floats, expected, iteration);
            }
        }

        return new WorkerResult(rank, [.. times], rank == 0 ? (long)total * bytes.Length : 0);
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            data = data[socket.Send(data)..];
        }
    }

    private static void ReceiveExactly(Socket socket, Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            int count = socket.Receive(buffer);
            if (count == 0) throw new EndOfStreamException("The other socket worker closed the connection.");
            buffer = buffer[count..];
        }
    }

    public ValueTask DisposeAsync()
    {
        socket?.Dispose();
        listener?.Stop();
        return ValueTask.CompletedTask;
    }
}
