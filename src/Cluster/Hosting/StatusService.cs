using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.Cluster.Hosting;

/// <summary>
/// What a seed's ClusterClient receptionist offers to clients outside the cluster (<c>status</c>):
/// <see cref="GetStatus"/>, forwarded to the coordinator, whose answer goes straight back to the
/// asker. Everything else is ignored and logged, so reaching the receptionist does not reach
/// the coordinator.
/// </summary>
internal sealed class StatusService : ReceiveActor
{
    public const string Name = "status";

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private long _ignored;

    public StatusService(IActorRef coordinator)
    {
        Receive<GetStatus>(g => coordinator.Forward(g));
        ReceiveAny(m =>
        {
            _ignored++;
            if (_ignored <= 10 || _ignored % 1000 == 0)
                _log.Warning("Ignored a {0} sent to the status service from {1}: it answers GetStatus only; {2} ignored so far",
                    m.GetType().Name, Sender.Path.Address, _ignored);
        });
    }

    public static Props Props(IActorRef coordinator) => Akka.Actor.Props.Create(() => new StatusService(coordinator));
}
