using Akka.Actor;

namespace ActorTrain.Cluster.Tests.Coordination;

/// <summary>Timers as the protocol sets them: the single timers that are active, by key, with their message and delay.</summary>
internal sealed class RecordedTimers : IWithTimers, ITimerScheduler
{
    public readonly Dictionary<object, (object Message, TimeSpan Delay)> Single = [];

    public ITimerScheduler Timers { get => this; set { } }

    public IReadOnlyCollection<object> ActiveTimers => Single.Keys;

    public void StartSingleTimer(object key, object msg, TimeSpan timeout) => Single[key] = (msg, timeout);
    public void StartSingleTimer(object key, object msg, TimeSpan timeout, IActorRef sender) => Single[key] = (msg, timeout);
    public bool IsTimerActive(object key) => Single.ContainsKey(key);
    public void Cancel(object key) => Single.Remove(key);
    public void CancelAll() => Single.Clear();
    public void StartPeriodicTimer(object key, object msg, TimeSpan interval) => throw new NotSupportedException("the regroup sets no periodic timer");
    public void StartPeriodicTimer(object key, object msg, TimeSpan interval, IActorRef sender) => throw new NotSupportedException("the regroup sets no periodic timer");
    public void StartPeriodicTimer(object key, object msg, TimeSpan initialDelay, TimeSpan interval) => throw new NotSupportedException("the regroup sets no periodic timer");
    public void StartPeriodicTimer(object key, object msg, TimeSpan initialDelay, TimeSpan interval, IActorRef sender) => throw new NotSupportedException("the regroup sets no periodic timer");
}
