using System.Runtime.InteropServices;
using System.Text;

namespace ActorTrain.Sync.Collectives.Nccl;

/// <summary>One place a native library may be: a full path and where that path came from.</summary>
/// <param name="Path">Full path of the file, or a bare file name left to the system loader.</param>
/// <param name="Source">Why this path is tried (configured path, LD_LIBRARY_PATH, …), for error messages.</param>
internal sealed record ProbeCandidate(string Path, string Source)
{
    /// <summary>Candidates that the system loader resolves itself (ld.so.cache, RUNPATH).</summary>
    public const string SystemLoader = "system loader";

    /// <summary>Whether the candidate is a bare name handed to the system loader rather than a file to check.</summary>
    public bool IsBareName => Source == SystemLoader;
}

/// <summary>The directories searched for native libraries, in order after a configured path.</summary>
/// <param name="LdLibraryPath">The value of <c>LD_LIBRARY_PATH</c> (colon-separated), or null.</param>
/// <param name="StandardDirectories">The usual install locations of CUDA and NCCL.</param>
/// <param name="PythonSitePackages">Python <c>site-packages</c> folders, where pip and conda put NVIDIA's wheels.</param>
/// <param name="UseSystemLoader">Whether to try the bare file names last (the loader's cache, <c>/etc/ld.so.conf</c>).</param>
internal sealed record ProbeLocations(
    string? LdLibraryPath,
    IReadOnlyList<string> StandardDirectories,
    IReadOnlyList<string> PythonSitePackages,
    bool UseSystemLoader = true)
{
    /// <summary>Where distributions, the CUDA toolkit and NCCL's tarballs install their libraries.</summary>
    public static readonly IReadOnlyList<string> DefaultStandardDirectories =
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/local/cuda/lib64",
        "/usr/local/nccl/lib",
        "/usr/lib64",
        "/usr/lib",
    ];

    /// <summary>The locations of this process: its environment and the Python environments it can see.</summary>
    public static ProbeLocations FromEnvironment()
    {
        // A conda environment keeps NCCL and the CUDA runtime in its own lib folder.
        var conda = Environment.GetEnvironmentVariable("CONDA_PREFIX");
        var standard = string.IsNullOrWhiteSpace(conda)
            ? DefaultStandardDirectories
            : [.. DefaultStandardDirectories, Path.Combine(conda.Trim(), "lib")];
        return new ProbeLocations(Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"), standard, PythonEnvironments.SitePackages());
    }
}

/// <summary>
/// Finds and loads a native library by trying, in order: a configured path (a file, or a folder
/// holding one of the file names), each <c>LD_LIBRARY_PATH</c> entry, the standard install folders,
/// NVIDIA's Python wheels (<c>site-packages/nvidia/*/lib</c>, <c>site-packages/torch/lib</c>), and
/// finally the bare file names through the system loader. Every attempt is recorded so a failure
/// can say exactly what was probed.
/// </summary>
internal static class NativeLibraryProbe
{
    /// <summary>
    /// Every place to try for <paramref name="fileNames"/>, in probing order, without touching the files
    /// except to list the Python wheels' folders. Duplicates are dropped (the first source wins).
    /// </summary>
    public static IReadOnlyList<ProbeCandidate> Candidates(
        IReadOnlyList<string> fileNames, string? configuredPath, ProbeLocations locations)
    {
        ArgumentNullException.ThrowIfNull(fileNames);
        ArgumentNullException.ThrowIfNull(locations);
        var result = new List<ProbeCandidate>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Add(string path, string source)
        {
            if (seen.Add(path))
            {
                result.Add(new ProbeCandidate(path, source));
            }
        }

        if (!string.IsNullOrWhiteSpace(configuredPath))
        {
            var configured = configuredPath.Trim();
            if (Directory.Exists(configured))
            {
                foreach (var name in fileNames)
                {
                    Add(Path.Combine(configured, name), "configured folder");
                }
            }
            else
            {
                Add(configured, "configured path");
            }
        }

        foreach (var dir in (locations.LdLibraryPath ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            foreach (var name in fileNames)
            {
                Add(Path.Combine(dir, name), "LD_LIBRARY_PATH");
            }
        }

        foreach (var dir in locations.StandardDirectories)
        {
            foreach (var name in fileNames)
            {
                Add(Path.Combine(dir, name), "standard location");
            }
        }

        foreach (var sitePackages in locations.PythonSitePackages)
        {
            foreach (var libDir in PythonLibraryDirectories(sitePackages))
            {
                foreach (var name in fileNames)
                {
                    Add(Path.Combine(libDir, name), "python site-packages");
                }
            }
        }

        if (locations.UseSystemLoader)
        {
            foreach (var name in fileNames)
            {
                Add(name, ProbeCandidate.SystemLoader);
            }
        }

        return result;
    }

    /// <summary>
    /// Loads the first candidate that exists, loads, and exports <paramref name="requiredExport"/>.
    /// Returns false with a report of every attempt when none does.
    /// </summary>
    public static bool TryLoad(
        IReadOnlyList<ProbeCandidate> candidates,
        string requiredExport,
        out IntPtr handle,
        out ProbeCandidate? loaded,
        out string report)
    {
        var missing = new List<string>();
        var failures = new List<string>();
        foreach (var candidate in candidates)
        {
            if (!candidate.IsBareName && !File.Exists(candidate.Path))
            {
                missing.Add(candidate.Path);
                continue;
            }

            try
            {
                var h = NativeLibrary.Load(candidate.Path);
                if (!NativeLibrary.TryGetExport(h, requiredExport, out _))
                {
                    // Leave it loaded: another loaded library may share it, and unloading is not worth the risk.
                    failures.Add($"{candidate.Path} ({candidate.Source}): loads but does not export {requiredExport}");
                    continue;
                }

                handle = h;
                loaded = candidate;
                report = $"loaded {candidate.Path} ({candidate.Source})";
                return true;
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                var error = LoaderError(e.Message);
                if (candidate.IsBareName && error.Contains("cannot open shared object file", StringComparison.Ordinal))
                {
                    missing.Add($"{candidate.Path} ({ProbeCandidate.SystemLoader})");
                }
                else
                {
                    failures.Add($"{candidate.Path} ({candidate.Source}): {error}");
                }
            }
        }

        handle = IntPtr.Zero;
        loaded = null;
        report = Describe(missing, failures);
        return false;
    }

    private static string Describe(List<string> missing, List<string> failures)
    {
        var text = new StringBuilder();
        if (failures.Count > 0)
        {
            text.Append("could not load: ").AppendJoin("; ", failures);
        }

        if (missing.Count > 0)
        {
            if (text.Length > 0)
            {
                text.Append(". ");
            }

            text.Append("not found: ").AppendJoin(", ", missing);
        }

        return text.Length > 0 ? text.ToString() : "no candidate to probe";
    }

    /// <summary>Folders inside one <c>site-packages</c> that NVIDIA's and PyTorch's wheels put shared libraries in.</summary>
    internal static IEnumerable<string> PythonLibraryDirectories(string sitePackages)
    {
        var nvidia = Path.Combine(sitePackages, "nvidia");
        if (Directory.Exists(nvidia))
        {
            // nvidia/nccl/lib, nvidia/cuda_runtime/lib (CUDA 12 wheels), nvidia/cu13/lib (CUDA 13 wheels).
            string[] packages;
            try
            {
                packages = Directory.GetDirectories(nvidia);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                packages = [];
            }

            Array.Sort(packages, StringComparer.Ordinal);
            foreach (var package in packages)
            {
                var lib = Path.Combine(package, "lib");
                if (Directory.Exists(lib))
                {
                    yield return lib;
                }
            }
        }

        var torchLib = Path.Combine(sitePackages, "torch", "lib");
        if (Directory.Exists(torchLib))
        {
            yield return torchLib;
        }
    }

    /// <summary>The loader's own words (dlerror) without .NET's advice around them.</summary>
    private static string LoaderError(string message)
    {
        const string Marker = "LD_DEBUG environment variable:";
        var at = message.IndexOf(Marker, StringComparison.Ordinal);
        var text = at >= 0 ? message[(at + Marker.Length)..] : message;
        return text.ReplaceLineEndings(" ").Trim();
    }
}
