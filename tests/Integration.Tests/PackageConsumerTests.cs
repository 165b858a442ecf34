using System.Diagnostics;
using System.Security;
using System.Text;
using System.Text.Json;
using Xunit.Abstractions;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// ActorTrain as a new user gets it: the solution packed to a folder, the job template installed
/// from it, a project made from the template outside the repository, its job replaced by the
/// user's own, built against the packed packages only (no project references), and trained on
/// two node processes. This is also what catches a package that lacks the native-library fix:
/// without it every node exits 2 because libLibTorchSharp.so does not load on this machine.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class PackageConsumerTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan PackTimeout = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(4);
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(4);
    private const string ProjectName = "RegressionConsumer";

    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("actortrain-consumer-");

    public void Dispose()
    {
        try { _work.Delete(recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    [Fact]
    public async Task A_project_made_from_the_template_outside_the_repository_trains_its_own_job_from_the_packed_packages()
    {
        var work = _work.FullName;
        Assert.False(work.StartsWith(Repo.Root.TrimEnd('/') + "/", StringComparison.Ordinal), $"{work} is inside the repository");
        var feed = Path.Combine(work, "feed");
        var hive = Path.Combine(work, "template-hive");
        var project = Path.Combine(work, ProjectName);
        var outDir = Path.Combine(work, "out");
        // A version no earlier run can have left in a package cache.
        var version = $"0.1.0-consumer.{DateTime.UtcNow:yyyyMMddHHmmss}";

        // The packages are made from the build these tests run on (this project builds every packable project
        // first): no build and no restore here, so nothing this pack does touches a build still running.
        await Dotnet(Repo.Root, PackTimeout, "pack", Path.Combine(Repo.Root, "ActorTrain.sln"), "-c", Repo.Configuration, "--no-build",
            "-o", feed, $"-p:PackageVersion={version}");
        foreach (var id in new[] { "ActorTrain.Sync", "ActorTrain.Cluster", "ActorTrain", "ActorTrain.Hosting", "ActorTrain.Templates" })
            Assert.True(File.Exists(Path.Combine(feed, $"{id}.{version}.nupkg")), $"dotnet pack made no {id} {version}");
        // Examples, tests, tools and benchmarks are not packed.
        Assert.Equal(5, Directory.GetFiles(feed, "*.nupkg").Length);

        await Dotnet(work, BuildTimeout, "new", "install", Path.Combine(feed, $"ActorTrain.Templates.{version}.nupkg"), "--debug:custom-hive", hive);
        await Dotnet(work, BuildTimeout, "new", "actortrain-job", "-n", ProjectName, "-o", project, "--debug:custom-hive", hive);
        Assert.Contains($"Include=\"ActorTrain.Hosting\" Version=\"{version}\"", File.ReadAllText(Path.Combine(project, $"{ProjectName}.csproj")));

        // The user's own job instead of the template's. The template's job class stays in the project,
        // unused, so the build also shows that the template compiles as shipped.
        Assert.True(File.Exists(Path.Combine(project, "SpiralJob.cs")), "the template made no SpiralJob.cs");
        File.WriteAllText(Path.Combine(project, "Program.cs"), ConsumerProgram);
        await WriteNuGetConfig(project, feed, Path.Combine(work, "packages"));

        await Dotnet(project, BuildTimeout, "build", "-c", "Release");
        var dll = Path.Combine(project, "bin", "Release", "net10.0", $"{ProjectName}.dll");

        var run = await Run(project, RunTimeout, "dotnet", dll, "local", "--nodes", "2", "--epochs", "2", "--out", outDir, "--no-progress",
            "--set", "actortrain.job.hidden=48");
        output.WriteLine(run.Output);
        Assert.True(run.ExitCode == 0, $"local --nodes 2 exited {run.ExitCode}:\n{run.Output}");

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal("regression", r.GetProperty("job_id").GetString());
        Assert.Equal(2, r.GetProperty("world_size").GetInt32());
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(["0", "1"], checksums.Keys.Order());
        Assert.Single(checksums.Values.Distinct());
        Assert.True(r.GetProperty("replicas_equal").GetBoolean());
        // The job's own metric (R² on held-out points) is what the report carries: the model learned the function.
        var r2 = r.GetProperty("test_r2").GetDouble();
        Assert.True(r2 > 0.5, $"R² on the held-out points is {r2}; the output:\n{run.Output}");
        Assert.True(r.GetProperty("test_mse").GetDouble() >= 0);
        // The job's own setting reached every node's model (--set over the job's default of 32).
        Assert.Equal(48, r.GetProperty("hidden_units").GetDouble());
        Assert.False(r.TryGetProperty("test_accuracy", out _), "a job with metrics of its own gets no assumed accuracy");
        Assert.All(r.GetProperty("epoch_history").EnumerateArray(), e => Assert.True(e.TryGetProperty("test_r2", out _)));
        Assert.True(File.Exists(Path.Combine(outDir, "test_r2.png")), "a plot per job metric");
    }

    /// <summary>
    /// The consumer's nuget.config: the packed folder for ActorTrain's packages (and only there),
    /// the registries this machine's NuGet already uses for everything else, and a package folder
    /// of its own that falls back to the user's cache (TorchSharp's gigabyte is not copied again).
    /// </summary>
    private static async Task WriteNuGetConfig(string project, string feed, string packages)
    {
        var sources = (await Dotnet(project, BuildTimeout, "nuget", "list", "source", "--format", "short"))
            .Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("E ", StringComparison.Ordinal)).Select(l => l[2..].Trim()).ToList();
        Assert.NotEmpty(sources);
        var cache = (await Dotnet(project, BuildTimeout, "nuget", "locals", "global-packages", "--list")).Trim();
        cache = cache[(cache.IndexOf(':') + 1)..].Trim();

        static string X(string s) => SecurityElement.Escape(s);
        var xml = new StringBuilder();
        xml.AppendLine("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        xml.AppendLine("<configuration>");
        xml.AppendLine($"  <config><add key=\"globalPackagesFolder\" value=\"{X(packages)}\" /></config>");
        xml.AppendLine("  <packageSources>");
        xml.AppendLine("    <clear />");
        xml.AppendLine($"    <add key=\"actortrain-packed\" value=\"{X(feed)}\" />");
        for (var i = 0; i < sources.Count; i++) xml.AppendLine($"    <add key=\"registry{i}\" value=\"{X(sources[i])}\" />");
        xml.AppendLine("  </packageSources>");
        xml.AppendLine($"  <fallbackPackageFolders><clear /><add key=\"user-cache\" value=\"{X(cache)}\" /></fallbackPackageFolders>");
        xml.AppendLine("  <packageSourceMapping>");
        xml.AppendLine("    <packageSource key=\"actortrain-packed\"><package pattern=\"ActorTrain\" /><package pattern=\"ActorTrain.*\" /></packageSource>");
        for (var i = 0; i < sources.Count; i++) xml.AppendLine($"    <packageSource key=\"registry{i}\"><package pattern=\"*\" /></packageSource>");
        xml.AppendLine("  </packageSourceMapping>");
        xml.AppendLine("</configuration>");
        File.WriteAllText(Path.Combine(project, "nuget.config"), xml.ToString());
    }

    private static async Task<string> Dotnet(string directory, TimeSpan timeout, params string[] args)
    {
        var result = await Run(directory, timeout, "dotnet", args);
        Assert.True(result.ExitCode == 0, $"dotnet {string.Join(' ', args)} exited {result.ExitCode}:\n{result.Output}");
        return result.Output;
    }

    /// <summary>
    /// Runs a program with its output in a file: build servers it starts outlive it, and would hold
    /// a pipe open. The MSBuild variables of the test host are not passed on.
    /// </summary>
    private static async Task<(int ExitCode, string Output)> Run(string directory, TimeSpan timeout, string program, params string[] args)
    {
        var log = Path.GetTempFileName();
        try
        {
            var psi = new ProcessStartInfo("bash") { WorkingDirectory = directory, UseShellExecute = false, RedirectStandardInput = true };
            foreach (var a in new[] { "-c", "exec \"$@\" > \"$LOG\" 2>&1", "run", program }.Concat(args)) psi.ArgumentList.Add(a);
            psi.Environment["LOG"] = log;
            psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            psi.Environment["DOTNET_NOLOGO"] = "1";
            foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
                psi.Environment.Remove(key);
            using var process = Process.Start(psi)!;
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"{program} {string.Join(' ', args)} did not end within {timeout.TotalMinutes:0} min:\n{Tail(File.ReadAllText(log))}");
            }
            return (process.ExitCode, Tail(File.ReadAllText(log)));
        }
        finally
        {
            File.Delete(log);
        }
    }

    private static string Tail(string text) => text.Length <= 6000 ? text : "…" + text[^6000..];

    /// <summary>
    /// The user's program: a regression (y from 8 features, partly non-linear) with BatchNorm1d,
    /// SGD with momentum, mean-squared-error loss and R² on held-out points as its metric. The
    /// data are made from a fixed seed, so every node holds the same points.
    /// </summary>
    private const string ConsumerProgram = """
        using ActorTrain.Hosting;
        using ActorTrain.TrainerActors.Jobs;
        using TorchSharp;
        using static TorchSharp.torch;

        return ActorTrainHost.Run(args, new RegressionJob());

        sealed class RegressionJob : TrainingJob
        {
            public override string Name => "regression";
            public override string DefaultConfig => "actortrain.training { batch-size = 32, log-interval = 25 }\nactortrain.job.hidden = 32";

            private int _hidden;

            // The job's own setting: the width of the hidden layer (the run sets it with --set).
            public override void Configure(JobSettings settings) => _hidden = settings.GetInt("hidden", min: 1);

            public override nn.Module<Tensor, Tensor> CreateModel() => nn.Sequential(
                ("fc1", nn.Linear(Points.Features, _hidden)), ("bn1", nn.BatchNorm1d(_hidden)), ("relu1", nn.ReLU()),
                ("fc2", nn.Linear(_hidden, 1)));

            public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) =>
                optim.SGD(model.parameters(), learningRate: 0.02, momentum: 0.9);

            public override Tensor ComputeLoss(Tensor output, Tensor target) => nn.functional.mse_loss(output, target);

            public override IBatchSource LoadTrainingData() => new Points(3000, seed: 11);
            public override IBatchSource? LoadTestData() => new Points(500, seed: 12);

            // Clipping before every optimizer step and a step-down learning rate after the first epoch: the job's callbacks.
            public override IReadOnlyList<TrainingCallback> CreateCallbacks() =>
                [new ClipGradientNorm(5.0), new EpochLearningRate(epoch => epoch == 1 ? 0.02 : 0.01)];

            /// <summary>R²: 1 - (residual sum of squares) / (total sum of squares) over the held-out points, and the mean squared error.</summary>
            public override IReadOnlyDictionary<string, double> Evaluate(nn.Module<Tensor, Tensor> model, IBatchSource data, TrainingContext context)
            {
                var all = Enumerable.Range(0, data.Count).ToArray();
                var (input, target) = data.GetBatch(all, context.Device);
                var residual = (model.call(input) - target).pow(2).sum().item<float>();
                var total = (target - target.mean()).pow(2).sum().item<float>();
                return new Dictionary<string, double> { ["test_r2"] = 1.0 - residual / total, ["test_mse"] = residual / data.Count, ["hidden_units"] = _hidden };
            }
        }

        sealed class Points : IBatchSource
        {
            public const int Features = 8;
            private readonly float[] _x;
            private readonly float[] _y;

            public Points(int count, int seed)
            {
                var random = new Random(seed);
                Count = count;
                _x = new float[count * Features];
                _y = new float[count];
                for (var i = 0; i < count; i++)
                {
                    double y = 0;
                    for (var f = 0; f < Features; f++)
                    {
                        var v = random.NextDouble() * 2 - 1;
                        _x[i * Features + f] = (float)v;
                        y += (f + 1) * 0.25 * v;
                    }
                    _y[i] = (float)(y + Math.Sin(3 * _x[i * Features]) + 0.05 * (random.NextDouble() - 0.5));
                }
            }

            public int Count { get; }

            public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
            {
                var x = new float[indices.Length * Features];
                var y = new float[indices.Length];
                for (var i = 0; i < indices.Length; i++)
                {
                    Array.Copy(_x, indices[i] * Features, x, i * Features, Features);
                    y[i] = _y[indices[i]];
                }
                return (tensor(x, [indices.Length, Features]).to(device), tensor(y, [indices.Length, 1]).to(device));
            }
        }
        """;
}
