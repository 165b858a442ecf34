using ActorTrain.Cluster.Serialization;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.Cluster.Metrics;

/// <summary>
/// Counts and logs the control messages <see cref="ActorTrainMessageSerializer"/> refuses (a wrong
/// or missing cluster secret, malformed bytes): Akka only drops such a message, and the refusal
/// reaches this actor through the event stream. Every node runs one, trainer or not.
/// </summary>
internal sealed class ControlMessageRefusals : ReceiveActor
{
    public const string Name = "control-refusals";

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private long _refused;

    public ControlMessageRefusals(NodeMetrics? metrics)
    {
        Receive<ActorTrainMessageSerializer.Refused>(r =>
        {
            _refused++;
            metrics?.Dropped(r.Reason);
            // The first few and then every 1000th, so a flood cannot flood the log too.
            if (_refused <= 10 || _refused % 1000 == 0)
                _log.Warning("Refused a control message ({0}): {1}; {2} refused so far", r.Reason, r.Problem, _refused);
        });
    }

    public static Props Props(NodeMetrics? metrics) => Akka.Actor.Props.Create(() => new ControlMessageRefusals(metrics));

    protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(ActorTrainMessageSerializer.Refused));

    protected override void PostStop() => Context.System.EventStream.Unsubscribe(Self);
}
