using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using Akka.TestKit;
using Akka.TestKit.Xunit2;

namespace ActorTrain.Cluster.Tests.Hosting;

public class StatusServiceSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    [Fact]
    public void Status_service_must_pass_on_GetStatus_and_let_the_coordinator_answer_the_asker()
    {
        var coordinator = new TestProbe(fixture.System, new XunitAssertions());
        var client = new TestProbe(fixture.System, new XunitAssertions());
        var service = fixture.System.ActorOf(StatusService.Props(coordinator.Ref));

        client.Send(service, new GetStatus("r1"));

        Assert.Equal(new GetStatus("r1"), coordinator.ExpectMsg<GetStatus>(TestConfig.Timeout));
        Assert.Equal(client.Ref, coordinator.LastSender);
    }

    [Fact]
    public void Status_service_must_ignore_every_other_message()
    {
        var coordinator = new TestProbe(fixture.System, new XunitAssertions());
        var client = new TestProbe(fixture.System, new XunitAssertions());
        var service = fixture.System.ActorOf(StatusService.Props(coordinator.Ref));

        client.Send(service, new NodeFailed("node-a", "forged"));
        client.Send(service, new RegisterNode("job", 3, "fp", "node-x", 1, "p", "e", ["cpu"], "h:1", null, null));
        client.Send(service, "anything");

        coordinator.ExpectNoMsg(TestConfig.Quiet);
        client.ExpectNoMsg(TestConfig.Quiet);
    }
}
