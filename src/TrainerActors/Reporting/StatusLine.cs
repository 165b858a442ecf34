using System.Globalization;

namespace ActorTrain.TrainerActors.Reporting;

/// <summary>The compact line a worker node prints now and then instead of a progress bar.</summary>
internal static class StatusLine
{
    /// <summary>E.g. <c>node1: epoch 3/10 step 40/70 · 12.3 steps/s</c>; the rate is left out when not known.</summary>
    public static string Compact(string nodeName, int epoch, int epochs, long step, long stepsPerEpoch, double stepsPerSecond)
    {
        var line = string.Create(
            CultureInfo.InvariantCulture,
            $"{nodeName}: epoch {epoch}/{epochs} step {step}/{stepsPerEpoch}");
        return double.IsFinite(stepsPerSecond) && stepsPerSecond > 0
            ? line + string.Create(CultureInfo.InvariantCulture, $" · {stepsPerSecond:0.0} steps/s")
            : line;
    }
}
