using System.Collections.Concurrent;
using ActorTrain.Sync;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Tools.GpuProbe;

/// <summary>
/// Checks ActorTrain's NCCL backend on the GPUs of this machine: loads NCCL and the CUDA runtime
/// through the project's bindings, allocates device buffers, runs every collective on device and on
/// host memory across all visible GPUs (one local rank per GPU, each on its own thread) and compares
/// the results with sums computed here. Prints one line per check, <c>PASS|FAIL|SKIP name: detail</c>.
/// Exit code: 0 when nothing failed (also when everything was skipped for want of a GPU), 1 when a
/// check failed, 2 for bad arguments.
/// </summary>
public static class Program
{
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(60);
    private static int _failed;

    public static int Main(string[] args)
    {
        string? ncclLibrary = null;
        var elements = (1 << 20) + 3;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--nccl-library" when i + 1 < args.Length:
                    ncclLibrary = args[++i];
                    break;
                case "--elements" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n > 0:
                    elements = n;
                    i++;
                    break;
                default:
                    Console.Error.WriteLine($"usage: gpuprobe [--nccl-library PATH] [--elements N]   (unknown or incomplete argument '{args[i]}')");
                    return 2;
            }
        }

        Run(ncclLibrary, elements);
        Console.WriteLine(_failed == 0 ? "gpuprobe: no check failed" : $"gpuprobe: {_failed} check(s) failed");
        return _failed == 0 ? 0 : 1;
    }

    private static void Run(string? ncclLibrary, int elements)
    {
        var gpuChecks = new[]
        {
            "cuda-memory", "nccl-unique-id", "nccl-comm-init", "device-all-reduce", "device-reduce-scatter", "device-all-gather",
            "device-broadcast", "host-all-reduce", "host-reduce-scatter-all-gather", "host-hierarchical-all-reduce", "host-broadcast",
            "nccl-comm-init-all", "abort-on-cancel", "intra-node-auto-selects-nccl",
        };

        // The CUDA runtime first (often beside NCCL: the configured folder is probed too), so versions
        // and devices are reported even where NCCL is missing.
        var configuredFolder = ncclLibrary is null ? null : Directory.Exists(ncclLibrary) ? ncclLibrary : Path.GetDirectoryName(ncclLibrary);
        if (!CudaRuntime.TryLoad(configuredFolder, out var cuda, out var cudaReport))
        {
            Skip("load-cudart", cudaReport);
        }
        else
        {
            var driver = cuda!.DriverVersion();
            Pass("load-cudart", $"CUDA runtime {CudaRuntime.FormatVersion(cuda.RuntimeVersion())}, driver supports CUDA {(driver == 0 ? "none (no driver)" : CudaRuntime.FormatVersion(driver))}, from {cuda.Path}");
        }

        var deviceReason = "";
        var count = cuda?.TryGetDeviceCount(out deviceReason) ?? 0;
        if (cuda is null)
        {
            Skip("devices", "the CUDA runtime does not load");
        }
        else if (count == 0)
        {
            Skip("devices", deviceReason);
        }

        if (!NcclLibrary.TryLoad(ncclLibrary, out var nccl, out var ncclReport))
        {
            Skip("load-nccl", ncclReport);
            SkipAll(gpuChecks, "NCCL does not load");
            return;
        }

        Pass("load-nccl", ncclReport);
        var library = nccl!;
        if (cuda is null || count == 0)
        {
            SkipAll(gpuChecks, cuda is null ? "the CUDA runtime does not load" : "no CUDA device");
            return;
        }

        Pass("devices", $"{count} CUDA device(s) visible");
        var devices = Enumerable.Range(0, count).ToArray();
        var note = count == 1
            ? " (one GPU: a world of 1; the padded layout for uneven slices needs 2+ GPUs)"
            : $" ({count} ranks, {elements} elements: slices of {string.Join("/", devices.Select(r => Partition.Slice(elements, count, r).Count))})";

        Check("cuda-memory", () => CudaMemory(cuda, devices, elements));

        NcclUniqueId id = default;
        Check("nccl-unique-id", () =>
        {
            var made = library.GetUniqueId();
            var bytes = made.ToBytes();
            id = NcclUniqueId.FromBytes(bytes);
            Require(id == made && bytes.Length == 128 && bytes.Any(b => b != 0), "the id does not survive ToBytes/FromBytes or is all zeros");
            return "128 bytes from ncclGetUniqueId, round-tripped through a byte[] as a message would carry it";
        });

        NcclCollective? collective = null;
        Check("nccl-comm-init", () =>
        {
            collective = NcclCollective.Create(library, cuda, devices, id);
            return collective.Description + " (ncclCommInitRank per rank inside ncclGroupStart/End)";
        });

        if (collective is null)
        {
            SkipAll(gpuChecks.Skip(3), "no communicators");
            return;
        }

        using (collective)
        {
            Check("device-all-reduce", () => DeviceCheck(cuda, collective, elements, Op.AllReduce) + note);
            Check("device-reduce-scatter", () => DeviceCheck(cuda, collective, elements, Op.ReduceScatter) + note);
            Check("device-all-gather", () => DeviceCheck(cuda, collective, elements, Op.AllGather) + note);
            Check("device-broadcast", () => DeviceCheck(cuda, collective, elements, Op.Broadcast) + note);
            Check("host-all-reduce", () => HostCheck(collective, elements, Op.AllReduce) + note);
            Check("host-reduce-scatter-all-gather", () => HostCheck(collective, elements, Op.ReduceScatter) + note);
            Check("host-hierarchical-all-reduce", () => HostCheck(collective, elements, Op.Hierarchical) + note);
            Check("host-broadcast", () => HostCheck(collective, elements, Op.Broadcast) + note);
        }

        Check("nccl-comm-init-all", () =>
        {
            using var all = NcclCollective.CreateWithInitAll(library, cuda, devices);
            return "ncclCommInitAll, then " + HostCheck(all, elements, Op.AllReduce);
        });

        Check("abort-on-cancel", () =>
        {
            using var doomed = NcclCollective.Create(library, cuda, devices);
            using var cancelled = new CancellationTokenSource();
            cancelled.Cancel();
            try
            {
                doomed.AllReduce(0, new float[1024], cancelled.Token);
                throw new CheckFailed("a cancelled all-reduce did not throw");
            }
            catch (OperationCanceledException)
            {
            }

            Require(doomed.AbortReason is not null, "the communicators were not aborted");
            try
            {
                doomed.AllReduce(0, new float[1024], CancellationToken.None);
                throw new CheckFailed("a call after the abort was accepted");
            }
            catch (InvalidOperationException e) when (e.Message.Contains("aborted", StringComparison.Ordinal))
            {
            }

            return "a cancelled call aborts every communicator (ncclCommAbort) and later calls are refused";
        });

        Check("intra-node-auto-selects-nccl", () =>
        {
            var selection = IntraNodeCollectives.Select(IntraNodeBackend.Auto, count, devicesAreCuda: true, ncclLibrary);
            using var chosen = selection.Collective;
            Require(selection.Backend == IntraNodeBackend.Nccl, $"auto chose {selection.Backend}: {selection.Reason}");
            return selection.Reason;
        });
    }

    private enum Op
    {
        AllReduce,
        ReduceScatter,
        AllGather,
        Broadcast,
        Hierarchical,
    }

    // Small integers: every sum below is exact in float32, so results must match bit for bit.
    private static float Value(int rank, int i) => rank + 1 + (i % 13);

    private static float Sum(int ranks, int i) => Enumerable.Range(0, ranks).Sum(r => Value(r, i));

    private static float[] Contribution(int rank, int elements) => Enumerable.Range(0, elements).Select(i => Value(rank, i)).ToArray();

    /// <summary>What local rank <paramref name="rank"/>'s buffer must hold after <paramref name="op"/>; NaN where any value is allowed.</summary>
    private static float Expected(Op op, int ranks, int rank, int elements, int i)
    {
        switch (op)
        {
            case Op.AllReduce or Op.Hierarchical:
                return Sum(ranks, i);
            case Op.Broadcast:
                return Value(0, i);
            case Op.AllGather:
                // Every slice j comes from rank j's (unreduced) contribution.
                return Value(OwnerOf(i, ranks, elements), i);
            default:
                var (offset, count) = Partition.Slice(elements, ranks, rank);
                return i >= offset && i < offset + count ? Sum(ranks, i) : float.NaN;
        }
    }

    private static int OwnerOf(int i, int ranks, int elements)
    {
        for (var r = 0; r < ranks; r++)
        {
            var (offset, count) = Partition.Slice(elements, ranks, r);
            if (i >= offset && i < offset + count)
            {
                return r;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(i));
    }

    private static string Verify(Op op, float[][] results, int elements)
    {
        var ranks = results.Length;
        for (var r = 0; r < ranks; r++)
        {
            for (var i = 0; i < elements; i++)
            {
                var expected = Expected(op, ranks, r, elements, i);
                if (!float.IsNaN(expected) && results[r][i] != expected)
                {
                    throw new CheckFailed($"local rank {r}, element {i}: {results[r][i]} instead of {expected}");
                }
            }
        }

        return $"all {elements} elements exact on {ranks} rank(s)";
    }

    private static string DeviceCheck(CudaRuntime cuda, NcclCollective collective, int elements, Op op)
    {
        var ranks = collective.LocalSize;
        var results = new float[ranks][];
        OnEveryRank(ranks, (r, token) =>
        {
            cuda.SetDevice(collective.DeviceOf(r));
            var pointer = cuda.Malloc((long)elements * sizeof(float));
            try
            {
                cuda.CopyToDevice(Contribution(r, elements), pointer);
                switch (op)
                {
                    case Op.AllReduce: collective.AllReduce(r, pointer, elements, token); break;
                    case Op.ReduceScatter: collective.ReduceScatter(r, pointer, elements, token); break;
                    case Op.AllGather: collective.AllGather(r, pointer, elements, token); break;
                    default: collective.Broadcast(r, 0, pointer, elements, token); break;
                }

                results[r] = new float[elements];
                cuda.CopyToHost(pointer, results[r]);
            }
            finally
            {
                cuda.Free(pointer);
            }
        });
        return "cudaMalloc'd buffers: " + Verify(op, results, elements);
    }

    private static string HostCheck(NcclCollective collective, int elements, Op op)
    {
        var ranks = collective.LocalSize;
        IIntraNodeCollective intra = collective;
        var buffers = Enumerable.Range(0, ranks).Select(r => Contribution(r, elements)).ToArray();
        OnEveryRank(ranks, (r, token) =>
        {
            switch (op)
            {
                case Op.AllReduce: intra.AllReduce(r, buffers[r], token); break;
                case Op.ReduceScatter:
                    intra.ReduceScatter(r, buffers[r], token);
                    intra.AllGather(r, buffers[r], token);
                    break;
                case Op.Hierarchical:
                    new ProcessGroup(new GroupMember(r, ranks, r, 0, 1), intra, null, ActorTrain.Sync.Compression.WireCompression.None, new GenerationScope(1, token))
                        .AllReduce(buffers[r], new CollectiveKey(0, 0), token);
                    break;
                default: collective.Broadcast(r, 0, buffers[r], token); break;
            }
        });
        var verified = op == Op.ReduceScatter ? Op.AllReduce : op;
        return "host float[] through IIntraNodeCollective (host→device→NCCL→host): " + Verify(verified, buffers, elements);
    }

    private static string CudaMemory(CudaRuntime cuda, int[] devices, int elements)
    {
        foreach (var device in devices)
        {
            cuda.SetDevice(device);
            var pointer = cuda.Malloc((long)elements * sizeof(float));
            try
            {
                var sent = Contribution(device, elements);
                cuda.CopyToDevice(sent, pointer);
                var back = new float[elements];
                cuda.CopyToHost(pointer, back);
                Require(sent.AsSpan().SequenceEqual(back), $"device {device}: the copy back differs");
            }
            finally
            {
                cuda.Free(pointer);
            }
        }

        return $"cudaMalloc, host→device→host copy of {elements} floats exact on {devices.Length} device(s)";
    }

    /// <summary>Runs <paramref name="body"/> for every local rank on its own thread; a hang becomes a failure after <see cref="CheckTimeout"/>.</summary>
    private static void OnEveryRank(int ranks, Action<int, CancellationToken> body)
    {
        using var timeout = new CancellationTokenSource(CheckTimeout);
        var errors = new ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            try
            {
                body(r, timeout.Token);
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (errors.TryDequeue(out var first))
        {
            throw first is OperationCanceledException ? new CheckFailed($"did not finish within {CheckTimeout.TotalSeconds:0}s") : first;
        }
    }

    private static void Check(string name, Func<string> check)
    {
        try
        {
            Pass(name, check());
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _failed);
            Console.WriteLine($"FAIL {name}: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    private static void Require(bool condition, string failure)
    {
        if (!condition)
        {
            throw new CheckFailed(failure);
        }
    }

    private static void Pass(string name, string detail) => Console.WriteLine($"PASS {name}: {detail}");

    private static void Skip(string name, string reason) => Console.WriteLine($"SKIP {name}: {reason}");

    private static void SkipAll(IEnumerable<string> names, string reason)
    {
        foreach (var name in names)
        {
            Skip(name, reason);
        }
    }

    private sealed class CheckFailed(string message) : Exception(message);
}
