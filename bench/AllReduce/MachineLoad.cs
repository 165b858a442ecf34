using System.Diagnostics;
using System.Globalization;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// How busy the whole machine was over a window, from /proc/stat. With the workers' own CPU time
/// subtracted this is the load of everything else, which a shared machine adds to the figures.
/// </summary>
internal readonly record struct MachineLoad(double BusySeconds, long Timestamp)
{
    // /proc/stat counts in USER_HZ ticks, 100 per second on Linux.
    private const double TicksPerSecond = 100;

    public static MachineLoad Now()
    {
        long timestamp = Stopwatch.GetTimestamp();
        try
        {
            // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
            var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            long Field(int i) => fields.Length > i ? long.Parse(fields[i], CultureInfo.InvariantCulture) : 0;
            long busy = Field(1) + Field(2) + Field(3) + Field(6) + Field(7) + Field(8);
            return new MachineLoad(busy / TicksPerSecond, timestamp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return new MachineLoad(double.NaN, timestamp);
        }
    }

    /// <summary>CPU seconds the machine spent busy since <paramref name="earlier"/>, and the wall seconds between.</summary>
    public (double BusySeconds, double WallSeconds) Since(MachineLoad earlier) =>
        (BusySeconds - earlier.BusySeconds, Stopwatch.GetElapsedTime(earlier.Timestamp, Timestamp).TotalSeconds);
}
