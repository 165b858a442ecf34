using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;

namespace ActorTrain.Cluster.Tests.Hosting;

public class ClusterBootstrapSpec
{
    private static RegisterNode Registration(string job) =>
        new(job, ActorTrainSettings.ProtocolVersion, "fp", "node-a", 1, "p", "e", ["cpu"], "node-a:4054", null, null);

    [Fact]
    public async Task Bootstrap_must_reach_the_coordinator_singleton_through_the_proxy_on_a_seed_node()
    {
        var config = TestConfig.Seed("actortrain.job-id = boot\nactortrain.min-nodes = 2");
        var (system, proxy) = ClusterBootstrap.Start(config, ActorTrainSettings.Create(config));
        try
        {
            Assert.Equal(ClusterBootstrap.SystemName, system.Name);
            var cluster = Akka.Cluster.Cluster.Get(system);
            cluster.Join(cluster.SelfAddress);

            var answer = await proxy.Ask(Registration("boot"), TestConfig.Timeout);

            Assert.Equal(new NodeRegistered("node-a", 1, 2), answer);
        }
        finally
        {
            await system.Terminate().WaitAsync(TestConfig.Timeout);
        }
    }

    [Fact]
    public async Task Bootstrap_must_not_host_the_coordinator_on_a_node_without_the_seed_role()
    {
        var config = TestConfig.Seed("akka.cluster.roles = [trainer]");
        var (system, proxy) = ClusterBootstrap.Start(config, ActorTrainSettings.Create(config));
        try
        {
            Assert.NotNull(proxy);
            await Assert.ThrowsAsync<ActorNotFoundException>(() =>
                system.ActorSelection("/user/coordinator-singleton").ResolveOne(TimeSpan.FromSeconds(1)));
        }
        finally
        {
            await system.Terminate().WaitAsync(TestConfig.Timeout);
        }
    }
}
