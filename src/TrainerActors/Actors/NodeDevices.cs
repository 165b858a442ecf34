using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Settings;
using ActorTrain.Sync.Collectives;
using ActorTrain.TrainerActors.Torch;
using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Event;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// A node's devices (one trainer per CUDA device, or trainers-per-node CPU trainers) and the
/// intra-node collective its trainers share. The collective is chosen at start-up, so an
/// impossible choice (nccl without CUDA) is a start-up error rather than a failed world.
/// </summary>
internal sealed class NodeDevices : IDisposable
{
    private readonly SyncSettings _sync;
    private IIntraNodeCollective _collective;
    private bool _used;

    private NodeDevices(IReadOnlyList<Device> devices, SyncSettings sync)
    {
        Devices = devices;
        _sync = sync;
        Cuda = devices.Any(d => d.type == DeviceType.CUDA);
        var selection = IntraNodeCollectives.Select(IntraNodeCollectives.Parse(sync.IntraNode, "actortrain.sync.intra-node"), devices.Count, Cuda, sync.NcclLibrary);
        _collective = selection.Collective;
        Backend = selection.Backend;
        Reason = selection.Reason;
    }

    public IReadOnlyList<Device> Devices { get; }

    public bool Cuda { get; }

    public IntraNodeBackend Backend { get; }

    /// <summary>Why the intra-node backend was chosen (for the log).</summary>
    public string Reason { get; }

    public string CollectiveName => _collective.Name;

    /// <summary>
    /// Chooses the devices that <paramref name="settings"/> ask for. Throws
    /// <see cref="InvalidOperationException"/> when they cannot be had (cuda without a CUDA device,
    /// nccl without CUDA or NCCL).
    /// </summary>
    public static NodeDevices Choose(ActorTrainSettings settings)
    {
        var cuda = settings.Node.Device switch
        {
            DeviceKind.Cuda => TorchRuntime.CudaAvailable() ? true : throw new InvalidOperationException(
                "actortrain.node.device = cuda, but TorchSharp finds no CUDA device (the default build uses the CPU package; see README, \"CUDA build\")"),
            DeviceKind.Auto => TorchRuntime.CudaAvailable(),
            _ => false,
        };
        var devices = cuda
            ? Enumerable.Range(0, TorchSharp.torch.cuda.device_count()).Select(i => new Device(DeviceType.CUDA, i)).ToList()
            : Enumerable.Range(0, settings.Node.TrainersPerNode).Select(_ => new Device(DeviceType.CPU)).ToList();
        return new NodeDevices(devices, settings.Sync);
    }

    /// <summary>
    /// Sets libtorch up as <paramref name="settings"/> ask (oneDNN, NNPACK), chooses the devices and
    /// says what was chosen. Throws as <see cref="Choose"/> does.
    /// </summary>
    public static NodeDevices Start(ActorTrainSettings settings, string nodeName, ILoggingAdapter log)
    {
        if (!TorchRuntime.TrySetMkldnn(settings.MkldnnEnabled, out var detail))
            log.Warning("Cannot switch oneDNN {0}: {1}", settings.MkldnnEnabled ? "on" : "off", detail);
        if (!TorchRuntime.TrySetNnpack(settings.NnpackEnabled, out var nnpackDetail))
            log.Warning("Cannot switch NNPACK {0}: {1}", settings.NnpackEnabled ? "on" : "off", nnpackDetail);
        var node = Choose(settings);
        if (node.Cuda) ProgressLine.Info("Node {0}: intra-node collective {1} ({2})", nodeName, node.CollectiveName, node.Reason);
        else log.Info("Intra-node collective: {0} ({1})", node.CollectiveName, node.Reason);
        ProgressLine.Info("Node {0}: {1} trainer(s) on {2}, oneDNN {3}", nodeName, node.Devices.Count,
            string.Join(",", node.Devices.Select(d => d.ToString())), settings.MkldnnEnabled ? "on" : "off");
        return node;
    }

    /// <summary>
    /// The intra-node collective of the next generation: the one made at start-up first, then a
    /// fresh one each time (a generation that ended mid-step may have left the old one's
    /// participants out of step).
    /// </summary>
    public IIntraNodeCollective ForGeneration()
    {
        if (_used)
        {
            _collective.Dispose();
            _collective = IntraNodeCollectives.Select(Backend, Devices.Count, Cuda, _sync.NcclLibrary).Collective;
        }
        _used = true;
        return _collective;
    }

    /// <summary>
    /// Intra-op threads per trainer in world <paramref name="w"/>, where this node is <paramref name="me"/>:
    /// nodes started side by side on one machine share its cores.
    /// </summary>
    public static (int Threads, int TrainersOnHost, string Host) IntraOpThreads(NodeSettings node, WorldAssignment w, WorldNode me)
    {
        var host = HostOf(me.EndpointPath);
        var trainersOnHost = w.Nodes.Where(n => HostOf(n.EndpointPath) == host).Sum(n => n.TrainerCount);
        return (node.EffectiveIntraOpThreads(trainersOnHost), trainersOnHost, host);
    }

    private static string HostOf(string actorPath) =>
        ActorPath.TryParse(actorPath, out var path) ? path.Address.Host ?? "" : "";

    public void Dispose() => _collective.Dispose();
}
