using ActorTrain.TrainerActors.DataPlane;
using Akka.Actor;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>A world's gradient endpoints are resolved with retries, so a node briefly unresolvable does not end the run.</summary>
public class EndpointResolutionTests
{
    private sealed class Endpoint : ReceiveActor;

    [Fact]
    public async Task An_endpoint_that_appears_after_the_first_try_is_resolved()
    {
        using var system = ActorSystem.Create("resolve-late");
        var path = "/user/late-endpoint";
        var resolving = NodeDataPlane.ResolveEndpointAsync(system.ActorSelection(path), path, DateTime.UtcNow + TimeSpan.FromSeconds(20));
        await Task.Delay(600);
        Assert.False(resolving.IsCompleted, "nothing is there yet");
        var endpoint = system.ActorOf(Props.Create(() => new Endpoint()), "late-endpoint");

        Assert.Equal(endpoint, await resolving.WaitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task An_endpoint_that_never_appears_fails_after_the_deadline_naming_its_path()
    {
        using var system = ActorSystem.Create("resolve-never");
        var path = "/user/no-such-endpoint";
        var started = DateTime.UtcNow;

        var e = await Assert.ThrowsAsync<ActorNotFoundException>(() =>
            NodeDataPlane.ResolveEndpointAsync(system.ActorSelection(path), path, started + TimeSpan.FromSeconds(1.5)));

        Assert.Contains(path, e.Message);
        Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(15));
    }
}
