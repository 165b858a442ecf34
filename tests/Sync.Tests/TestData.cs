namespace ActorTrain.Sync.Tests;

/// <summary>Deterministic inputs and bounded waits shared by the tests.</summary>
internal static class TestData
{
    /// <summary>Long enough for a slow CI machine, short enough that a hang fails the run quickly.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static float[] RandomFloats(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = (float)((random.NextDouble() * 2) - 1);
        }

        return values;
    }

    /// <summary>Element-wise sum in double precision, as the reference for float reductions.</summary>
    public static double[] ReferenceSum(IReadOnlyList<float[]> buffers, int length)
    {
        var sum = new double[length];
        foreach (var buffer in buffers)
        {
            for (int i = 0; i < length; i++)
            {
                sum[i] += buffer[i];
            }
        }

        return sum;
    }

    /// <summary>Asserts a float sum of <paramref name="terms"/> inputs in [-1, 1] is within rounding of the reference.</summary>
    public static void AssertCloseToReference(double[] expected, float[] actual, int terms)
    {
        Assert.Equal(expected.Length, actual.Length);
        double tolerance = 1e-6 * terms;
        for (int i = 0; i < expected.Length; i++)
        {
            if (Math.Abs(expected[i] - actual[i]) > tolerance)
            {
                Assert.Fail($"Element {i}: expected {expected[i]}, got {actual[i]} (tolerance {tolerance}).");
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> for participants 0..count-1, each on its own thread (collectives
    /// block), and fails instead of hanging: the token is cancelled and the wait abandoned at the timeout.
    /// </summary>
    public static async Task RunOnThreads(int count, Action<int, CancellationToken> body, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeout);
        var threads = Enumerable.Range(0, count)
            .Select(i => Task.Factory.StartNew(
                () => body(i, cts.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))
            .ToArray();
        await Task.WhenAll(threads).WaitAsync(timeout ?? Timeout);
    }
}
