using Akka.Actor;

namespace ActorTrain.Cluster.Tests;

/// <summary>One ActorSystem with ActorTrain's config and no networking, shared by a test class.</summary>
public sealed class LocalSystemFixture : IDisposable
{
    public ActorSystem System { get; } = ActorSystem.Create("actortrain-local", TestConfig.Local());

    public void Dispose() => System.Terminate().Wait(TestConfig.Timeout);
}
