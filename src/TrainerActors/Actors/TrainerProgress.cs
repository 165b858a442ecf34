using System.Diagnostics;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// Where one trainer is, written by the trainer's thread at every step and read by its node
/// actor on a timer (a trainer is busy inside its steps and cannot answer messages).
/// </summary>
internal sealed class TrainerProgress
{
    private const int Window = 20;
    private readonly object _gate = new();
    private readonly double[] _stepMs = new double[Window];
    private readonly double[] _computeMs = new double[Window];
    private int _count;
    private long _stepStarted;
    private long _steps;
    private int _epoch;
    private long _stepInEpoch;
    private long _stepsPerEpoch;
    private int _waitingBucket = -1;

    public TrainerProgress(int rank) => Rank = rank;

    public int Rank { get; set; }

    /// <param name="completedSteps">The run's steps this replica has completed (its global step).</param>
    public void StepStarted(int epoch, long stepInEpoch, long stepsPerEpoch, long completedSteps)
    {
        lock (_gate)
        {
            _steps = completedSteps;
            _stepStarted = Stopwatch.GetTimestamp();
            _epoch = epoch;
            _stepInEpoch = stepInEpoch;
            _stepsPerEpoch = stepsPerEpoch;
        }
    }

    public void StepFinished(double stepMs, double computeMs)
    {
        lock (_gate)
        {
            _stepMs[_count % Window] = stepMs;
            _computeMs[_count % Window] = computeMs;
            _count++;
            _steps++;
            _stepInEpoch++;
            _stepStarted = 0;
        }
    }

    /// <summary>The bucket whose reduction the trainer is waiting in (-1: none).</summary>
    public void SetWaitingBucket(int bucket)
    {
        lock (_gate) _waitingBucket = bucket;
    }

    /// <summary>The step in progress was dropped (its generation ended).</summary>
    public void StepAbandoned()
    {
        lock (_gate)
        {
            _stepStarted = 0;
            _waitingBucket = -1;
        }
    }

    public RankProgress Snapshot()
    {
        lock (_gate)
        {
            var n = Math.Min(_count, Window);
            var current = _stepStarted == 0 ? 0 : Stopwatch.GetElapsedTime(_stepStarted).TotalMilliseconds;
            return new RankProgress(Rank, _steps, n == 0 ? 0 : _stepMs.Take(n).Average(), n == 0 ? 0 : _computeMs.Take(n).Average(), current, _waitingBucket);
        }
    }

    public (int Epoch, long StepInEpoch, long StepsPerEpoch) Position()
    {
        lock (_gate) return (_epoch, _stepInEpoch, _stepsPerEpoch);
    }
}
