using System.Diagnostics;
using System.Globalization;
using System.Runtime.Versioning;
using System.Text.Json;
using Xunit.Abstractions;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// The container image as an operator builds and runs it: the base image from Debian's packages
/// (made once, then kept), the image from a self-contained publish (deploy/docker/build-image.sh),
/// and three containers on the host's network, each on its own ports, that train the MNIST
/// example together as a seed and two workers. Everything the test makes is removed at the end
/// but the base image.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class ContainerTests(ITestOutputHelper output)
{
    private static readonly TimeSpan BaseImageTimeout = TimeSpan.FromMinutes(20);
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(20);
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(8);

    /// <summary>The image's working directory, where the default out-dir ("out") lies.</summary>
    private const string ContainerOutDir = "/var/lib/actortrain/out";

    /// <summary>The non-root user the Dockerfile makes and runs the program as.</summary>
    private const string ImageUser = "10001:10001";

    private sealed record ContainerNode(string Name, string Role, int Port, int ManagementPort, string HostOutDir);

    /// <summary>
    /// How each node is started, all in one place (with <see cref="StartEnvironment"/>): the
    /// subcommand, its address and name. No seed-node list: the nodes find each other by Cluster
    /// Bootstrap with config discovery, set through the environment.
    /// </summary>
    private static IReadOnlyList<string> StartArguments(ContainerNode node, IReadOnlyList<ContainerNode> all) =>
    [
        node.Role,
        "--hostname", "127.0.0.1",
        "--port", node.Port.ToString(CultureInfo.InvariantCulture),
        "--node-name", node.Name,
        "--min-nodes", all.Count.ToString(CultureInfo.InvariantCulture),
        "--epochs", "1",
        "--intra-op-threads", "1",
        "--no-progress",
    ];

    /// <summary>Each container's environment: config discovery over every node's management endpoint, and its own management port.</summary>
    private static IReadOnlyDictionary<string, string> StartEnvironment(ContainerNode node, IReadOnlyList<ContainerNode> all) =>
        new Dictionary<string, string>
        {
            ["ACTORTRAIN__DISCOVERY__METHOD"] = "config",
            ["ACTORTRAIN__DISCOVERY__CONFIG__ENDPOINTS"] = "[" + string.Join(", ", all.Select(n => $"\"127.0.0.1:{n.ManagementPort}\"")) + "]",
            ["AKKA__MANAGEMENT__HTTP__HOSTNAME"] = "127.0.0.1",
            ["AKKA__MANAGEMENT__HTTP__PORT"] = node.ManagementPort.ToString(CultureInfo.InvariantCulture),
        };

    [DockerFact]
    [SupportedOSPlatform("linux")] // the attribute skips elsewhere
    public async Task Three_containers_on_the_host_network_build_from_the_image_and_train_to_equal_replicas()
    {
        ContainerEnvironment.StartDaemonIfNeeded();
        var run = $"it{Environment.ProcessId}-{DateTime.UtcNow:HHmmss}";
        var tag = $"actortrain-mnist:{run}";
        var work = Directory.CreateTempSubdirectory("actortrain-container-");
        var containers = new List<string>();
        var clock = Stopwatch.StartNew();
        var phases = new List<string>();
        void Phase(string name)
        {
            phases.Add($"{name} {clock.Elapsed.TotalSeconds:0.0} s");
            output.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] {name}: {clock.Elapsed.TotalSeconds:0.0} s");
            clock.Restart();
        }
        try
        {
            // 1. The base image, made from Debian's packages unless an earlier run left it.
            var baseImage = Script("make-base-image.sh", ["--name", ContainerEnvironment.BaseImage], BaseImageTimeout);
            output.WriteLine(baseImage);
            Phase("base image");

            // 2. The image: a self-contained publish (its own intermediate folder) and docker build.
            var build = Script("build-image.sh", ["--tag", tag, "--work", Path.Combine(work.FullName, "image")], BuildTimeout);
            output.WriteLine(ContainerEnvironment.Tail(build, 8));
            Phase("publish and image build");

            Assert.Equal(ImageUser, Docker("image", "inspect", "--format", "{{.Config.User}}", tag));
            Assert.Equal("[/app/actortrain]", Docker("image", "inspect", "--format", "{{.Config.Entrypoint}}", tag));
            var exposed = Docker("image", "inspect", "--format", "{{range $p, $v := .Config.ExposedPorts}}{{$p}} {{end}}", tag);
            Assert.Equal(["4053/tcp", "4054/tcp", "8558/tcp", "9464/tcp"], exposed.Split(' ', StringSplitOptions.RemoveEmptyEntries).Order());
            // Lean: the runtime image has neither the SDK nor a shared .NET install.
            var sdk = ContainerEnvironment.Run("docker", ["run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", tag, "-c",
                "command -v dotnet || ls -d /usr/share/dotnet /usr/lib/dotnet /app/sdk 2>/dev/null"], TimeSpan.FromMinutes(1));
            Assert.True(sdk.Code != 0 && sdk.Output.Length == 0, $"the image carries a .NET SDK or install: {sdk.Output}");

            // 3. Three containers on the host's network, distinct ports, each with its own output folder
            //    (writable for the image's non-root user), and a read-only root file system as on Kubernetes.
            var nodes = new[] { ("seed", "seed"), ("worker1", "worker"), ("worker2", "worker") }
                .Select(n =>
                {
                    var dir = Directory.CreateDirectory(Path.Combine(work.FullName, "out-" + n.Item1)).FullName;
                    File.SetUnixFileMode(dir, (UnixFileMode)0b111_111_111);
                    return new ContainerNode(n.Item1, n.Item2, NodeProcess.FreePort(), NodeProcess.FreePort(), dir);
                })
                .ToList();
            foreach (var node in nodes)
            {
                var name = $"actortrain-{run}-{node.Name}";
                var environment = StartEnvironment(node, nodes).SelectMany(e => new[] { "--env", $"{e.Key}={e.Value}" });
                Docker(["run", "--detach", "--name", name, "--label", $"org.actortrain.test={run}", "--network", "host",
                    "--read-only", "--tmpfs", "/tmp", "--volume", $"{node.HostOutDir}:{ContainerOutDir}", .. environment,
                    tag, .. StartArguments(node, nodes)]);
                containers.Add(name);
            }

            var codes = await Task.WhenAll(containers.Select(c => Task.Run(() =>
                ContainerEnvironment.Run("docker", ["wait", c], RunTimeout))));
            Phase("three containers trained 1 epoch");
            var logs = string.Join("\n", containers.Select(c => $"--- {c}:\n{ContainerEnvironment.Tail(ContainerEnvironment.Run("docker", ["logs", c], TimeSpan.FromMinutes(1)).Output)}"));
            Assert.True(codes.All(c => c is { Code: 0, Output: "0" }),
                $"docker wait: {string.Join(", ", codes.Select(c => $"{c.Code}/{c.Output}"))}\n{logs}");
            output.WriteLine(logs);

            var reportPath = Path.Combine(nodes[0].HostOutDir, "run-report.json");
            Assert.True(File.Exists(reportPath), $"the seed wrote no run-report.json\n{logs}");
            using var report = JsonDocument.Parse(File.ReadAllText(reportPath));
            var r = report.RootElement;
            Assert.Equal(3, r.GetProperty("world_size").GetInt32());
            Assert.Equal(["seed", "worker1", "worker2"], r.GetProperty("nodes").EnumerateArray().Select(n => n.GetProperty("name").GetString()).Order());
            var checksums = r.GetProperty("replica_checksums").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
            Assert.Equal(["0", "1", "2"], checksums.Keys.Order());
            Assert.Single(checksums.Values.Distinct());
            Assert.True(r.GetProperty("replicas_equal").GetBoolean());
            Assert.True(File.Exists(Path.Combine(nodes[0].HostOutDir, "model.pth")), "rank 0 (on the seed) wrote no model.pth");
            // Written by the image's user, not root.
            Assert.Equal("10001", ContainerEnvironment.Run("stat", ["-c", "%u", reportPath], TimeSpan.FromSeconds(10)).Output);
        }
        finally
        {
            foreach (var c in containers) ContainerEnvironment.Run("docker", ["rm", "--force", c], TimeSpan.FromMinutes(1));
            ContainerEnvironment.Run("docker", ["image", "rm", "--force", tag], TimeSpan.FromMinutes(2));
            ContainerEnvironment.Run("docker", ["image", "prune", "--force", "--filter", "label=org.actortrain.stage=trim"], TimeSpan.FromMinutes(2));
            try { work.Delete(recursive: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { output.WriteLine($"left {work.FullName}: {e.Message}"); }
            ContainerEnvironment.StopDaemonIfStartedHere();
            Phase("clean-up");
            output.WriteLine("times: " + string.Join(", ", phases));
        }
    }

    private static string Script(string name, IReadOnlyList<string> args, TimeSpan timeout)
    {
        var (code, text) = ContainerEnvironment.Run(Path.Combine(ContainerEnvironment.ScriptDirectory, name), args, timeout);
        Assert.True(code == 0, $"deploy/docker/{name} {string.Join(' ', args)} exited {code}:\n{ContainerEnvironment.Tail(text)}");
        return text;
    }

    private static string Docker(params string[] args)
    {
        var (code, text) = ContainerEnvironment.Run("docker", args, TimeSpan.FromMinutes(2));
        Assert.True(code == 0, $"docker {string.Join(' ', args)} exited {code}: {text}");
        return text;
    }
}
