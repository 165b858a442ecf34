using ActorTrain.Sync.Transport.Tcp;

namespace ActorTrain.Sync.Tests.Transport.Tcp;

public class TcpWarmUpTests
{
    [Fact]
    public async Task The_warm_up_ring_connects_on_loopback_sums_in_every_wire_format_and_closes()
    {
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        // It throws when the ring cannot connect or its two peers end with different sums.
        await TcpWarmUp.RunAsync(bound.Token);
        // Twice in a row: the first left no listener or connection behind that the second trips over.
        await TcpWarmUp.RunAsync(bound.Token);
        // Its shared-memory rings were unlinked once they stood.
        Assert.Empty(Directory.GetFiles(SharedMemoryRing.Directory, $"actortrain-ring-{Environment.ProcessId}-*"));
    }

    [Fact]
    public async Task A_cancelled_warm_up_stops_without_waiting_for_its_ring()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => TcpWarmUp.RunAsync(cancelled.Token));
    }
}
