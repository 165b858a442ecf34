using System.CommandLine;
using System.Globalization;
using ActorTrain.Bench.AllReduce;
using ActorTrain.Sync.Compression;

// allreduce: the launcher (one run, or --sweep). worker: one of the processes it starts.
// node: one rank of a run on several hosts, started by the user on each.
var root = new RootCommand("ActorTrain all-reduce benchmark: cross-node ring all-reduce between real processes on 127.0.0.1 (allreduce) or on several hosts (node)");

var nodes = new Option<int>("--nodes") { Description = "Ring peers, one process each (the socket ceiling always uses 2)", DefaultValueFactory = _ => 3 };
var bytes = new Option<string>("--bytes") { Description = "All-reduce size in bytes of float32: 1724320, 16MiB, 100MB, ...", DefaultValueFactory = _ => "16MiB" };
var transport = new Option<string>("--transport") { Description = "akka | tcp | shm (tcp with shared memory between ranks on one host) | socket (the plain-socket ceiling)", DefaultValueFactory = _ => "tcp" };
transport.AcceptOnlyFromAmong("akka", "tcp", "shm", "socket");
var iterations = new Option<int?>("--iterations") { Description = "Timed iterations (default: by size and transport)" };
var warmup = new Option<int?>("--warmup") { Description = "Untimed iterations first (default: by size and transport)" };
var json = new Option<string?>("--json") { Description = "Append one JSON record per run to this file" };
var wholeBucket = new Option<bool>("--akka-whole-bucket") { Description = "akka: send each ring segment as ONE message (chunk and frame size raised to fit)" };
var chunkBytes = new Option<string?>("--chunk-bytes") { Description = $"Largest chunk (default: akka 64KiB as in reference.conf, tcp {TcpWorker.DefaultChunkBytes / 1024}KiB)" };
var timeout = new Option<int?>("--timeout") { Description = "Seconds before a run is abandoned and its processes killed (default: by size)" };
var sweep = new Option<bool>("--sweep") { Description = "Run the standard matrix (431,080 floats, 16 MiB, 100 MiB x 2,3,4 nodes x akka, akka-whole, tcp + socket ceiling) and print a table" };
var repeat = new Option<int>("--repeat") { Description = "Run each measurement this many times and keep the fastest (other work on a shared machine only slows runs down)", DefaultValueFactory = _ => 1 };
var verbose = new Option<bool>("--verbose") { Description = "Show the workers' own output" };
var compression = new Option<string>("--compression") { Description = "Cross-node wire format of the timed all-reduces: none | fp16 | bf16 (actortrain.sync.compression)", DefaultValueFactory = _ => "none" };
compression.AcceptOnlyFromAmong([.. WireCompressionNames.All]);
var steadySteps = new Option<int?>("--steady-steps") { Description = "Steady-state mode: this many all-reduces without warm-up; every worker reports GC counts, allocation and RSS every --report-every" };
var reportEvery = new Option<int>("--report-every") { Description = "Steady-state mode: iterations between memory samples", DefaultValueFactory = _ => 100 };

var allreduce = new Command("allreduce", "Time ring all-reduces between worker processes over a transport");
foreach (var option in new Option[] { nodes, bytes, transport, iterations, warmup, json, wholeBucket, chunkBytes, timeout, sweep, repeat, verbose, compression, steadySteps, reportEvery })
{
    allreduce.Add(option);
}

allreduce.SetAction(async (r, cancellationToken) =>
{
    try
    {
        if (r.GetValue(sweep))
        {
            return await Sweep.RunAsync(r.GetValue(repeat), r.GetValue(json), r.GetValue(verbose), cancellationToken);
        }

        long size = ByteSize.Parse(r.GetValue(bytes)!);
        var kind = Enum.Parse<BenchTransport>(r.GetValue(transport)!, ignoreCase: true);
        int? steady = r.GetValue(steadySteps);
        if (steady is < 1)
        {
            throw new ArgumentException($"--steady-steps must be at least 1, got {steady}");
        }

        if (steady is not null && r.GetValue(reportEvery) < 1)
        {
            throw new ArgumentException($"--report-every must be at least 1, got {r.GetValue(reportEvery)}");
        }

        var spec = Sweep.Spec(r.GetValue(nodes), size, kind, r.GetValue(wholeBucket), steady ?? r.GetValue(iterations), steady is null ? r.GetValue(warmup) : 0) with
        {
            ChunkBytes = r.GetValue(chunkBytes) is { } c ? checked((int)ByteSize.Parse(c)) : 0,
            Compression = WireCompressionNames.Parse(r.GetValue(compression)),
            ReportEvery = steady is null ? 0 : r.GetValue(reportEvery),
        };
        if (r.GetValue(timeout) is { } seconds)
        {
            spec = spec with { Timeout = TimeSpan.FromSeconds(seconds) };
        }

        var result = await Launcher.RunBestOfAsync(spec, r.GetValue(repeat), r.GetValue(verbose), cancellationToken);
        Console.WriteLine(RunResult.CsvHeader);
        Console.WriteLine(result.CsvLine);
        if (result.Ok)
        {
            Console.Error.WriteLine(result.LoadNote);
            if (spec.ReportEvery > 0)
            {
                Console.WriteLine();
                foreach (var line in result.SteadyLines())
                {
                    Console.WriteLine(line);
                }
            }
        }

        if (r.GetValue(json) is { } file)
        {
            await File.AppendAllTextAsync(file, result.ToJson() + "\n", cancellationToken);
        }

        return result.Ok ? 0 : 1;
    }
    catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 2;
    }
});

var rank = new Option<int>("--rank") { Required = true };
var workerNodes = new Option<int>("--nodes") { Required = true };
var workerBytes = new Option<long>("--bytes") { Required = true };
var workerTransport = new Option<BenchTransport>("--transport") { Required = true };
var workerIterations = new Option<int>("--iterations") { Required = true };
var workerWarmup = new Option<int>("--warmup") { Required = true };
var workerChunk = new Option<int>("--chunk-bytes");
var workerTimeout = new Option<int>("--timeout") { Required = true };
var workerWhole = new Option<bool>("--akka-whole-bucket");
var workerCompression = new Option<string>("--compression") { DefaultValueFactory = _ => "none" };
var workerReportEvery = new Option<int>("--report-every");
var worker = new Command("worker", "Internal: one process of a run, started by allreduce") { Hidden = true };
foreach (var option in new Option[] { rank, workerNodes, workerBytes, workerTransport, workerIterations, workerWarmup, workerChunk, workerTimeout, workerWhole, workerCompression, workerReportEvery })
{
    worker.Add(option);
}

worker.SetAction(async (r, _) =>
{
    var spec = new RunSpec
    {
        Nodes = r.GetValue(workerNodes),
        Bytes = r.GetValue(workerBytes),
        Transport = r.GetValue(workerTransport),
        AkkaWholeBucket = r.GetValue(workerWhole),
        Iterations = r.GetValue(workerIterations),
        Warmup = r.GetValue(workerWarmup),
        ChunkBytes = r.GetValue(workerChunk),
        Timeout = TimeSpan.FromSeconds(r.GetValue(workerTimeout)),
        Compression = WireCompressionNames.Parse(r.GetValue(workerCompression)),
        ReportEvery = r.GetValue(workerReportEvery),
    };
    int code = await Worker.RunAsync(spec, r.GetValue(rank), ParentLink.Start());

    // Akka and socket threads must not keep a finished worker alive.
    Environment.Exit(code);
    return code;
});

var nodeRank = new Option<int>("--rank") { Description = "This node's ring position, 0..N-1; rank 0 is also the rendezvous and prints the result", Required = true };
var nodeNodes = new Option<int>("--nodes") { Description = "Ring peers, one node command per host (socket: exactly 2)", Required = true };
var rendezvous = new Option<string>("--rendezvous") { Description = "HOST:PORT where rank 0 listens for the others (rank 0 listens on its --bind address at PORT)", Required = true };
var bind = new Option<string>("--bind") { Description = "This host's address for the data plane, the one the other nodes reach it at", DefaultValueFactory = _ => "127.0.0.1" };
var node = new Command("node", "One rank of a run on several hosts: start one per host, rank 0 prints the result");
foreach (var option in new Option[] { nodeRank, nodeNodes, rendezvous, bind, bytes, transport, iterations, warmup, json, wholeBucket, chunkBytes, timeout, compression })
{
    node.Add(option);
}

node.SetAction(async (r, _) =>
{
    int code;
    try
    {
        var spec = Sweep.Spec(r.GetValue(nodeNodes), ByteSize.Parse(r.GetValue(bytes)!), Enum.Parse<BenchTransport>(r.GetValue(transport)!, ignoreCase: true),
            r.GetValue(wholeBucket), r.GetValue(iterations), r.GetValue(warmup)) with
        {
            ChunkBytes = r.GetValue(chunkBytes) is { } c ? checked((int)ByteSize.Parse(c)) : 0,
            Compression = WireCompressionNames.Parse(r.GetValue(compression)),
            Bind = Node.ParseBind(r.GetValue(bind)!),
        };
        spec = spec with { Timeout = r.GetValue(timeout) is { } seconds ? TimeSpan.FromSeconds(seconds) : spec.Timeout + Node.StartAllowance };
        int rankValue = r.GetValue(nodeRank);
        Node.Validate(spec, rankValue);
        var (host, port) = Node.ParseRendezvous(r.GetValue(rendezvous)!);
        code = await Node.RunAsync(spec, rankValue, host, port, r.GetValue(json));
    }
    catch (Exception e) when (e is ArgumentException or FormatException or OverflowException or RendezvousException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        code = 2;
    }

    // Akka and socket threads must not keep a finished node alive.
    Console.Out.Flush();
    Environment.Exit(code);
    return code;
});

var codecValues = new Option<int>("--values") { Description = "Floats per call: a chunk (default 40,960 = two 80 KiB tcp frames' worth of 16-bit values)", DefaultValueFactory = _ => 40_960 };
var codecIterations = new Option<int>("--iterations") { Description = "Timed calls per operation", DefaultValueFactory = _ => 5_000 };
var codec = new Command("codec", "Time the fp16/bf16 conversions the compressed ring runs per chunk (one thread)") { codecValues, codecIterations };
codec.SetAction(r =>
{
    try
    {
        return CodecMeasurement.Run(r.GetValue(codecValues), r.GetValue(codecIterations));
    }
    catch (ArgumentException e)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 2;
    }
});

root.Add(allreduce);
root.Add(codec);
root.Add(node);
root.Add(worker);
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
return await root.Parse(args).InvokeAsync();
