using Akka.Cluster;

namespace ActorTrain.Cluster.Tests.Coordination;

/// <summary>
/// One cluster member with the seed role that has joined itself, shared by the coordinator specs;
/// each test starts its own coordinator on it and plays the nodes with probes.
/// </summary>
public sealed class SeedSystem : IDisposable
{
    public SeedSystem()
    {
        var cluster = Akka.Cluster.Cluster.Get(Kit.Sys);
        cluster.Join(cluster.SelfAddress);
        Kit.AwaitCondition(() => cluster.SelfMember.Status == MemberStatus.Up, TestConfig.Timeout);
    }

    public Akka.TestKit.Xunit2.TestKit Kit { get; } = new(TestConfig.Seed(), "actortrain-seed");

    public void Dispose() => Kit.Dispose();
}
