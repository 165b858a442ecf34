namespace ActorTrain.Sync.Collectives.Nccl;

/// <summary>
/// Finds Python <c>site-packages</c> folders without running Python: NVIDIA ships CUDA and NCCL as
/// pip wheels (<c>nvidia-nccl-cu12</c>, <c>nvidia-cuda-runtime</c>…), which is where PyTorch
/// installations keep them.
/// </summary>
internal static class PythonEnvironments
{
    /// <summary>The site-packages folders of the active virtual or conda environment, of every <c>python3</c> on PATH, and of the system.</summary>
    public static IReadOnlyList<string> SitePackages()
    {
        var prefixes = new List<string>();
        AddIfSet(prefixes, Environment.GetEnvironmentVariable("VIRTUAL_ENV"));
        AddIfSet(prefixes, Environment.GetEnvironmentVariable("CONDA_PREFIX"));

        // A venv's bin/python3 is a link to the system interpreter: take the folder on PATH, not the link's target.
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            if (File.Exists(Path.Combine(dir, "python3")) && Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(dir)) is { } prefix)
            {
                AddIfSet(prefixes, prefix);
            }
        }

        AddIfSet(prefixes, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) is { Length: > 0 } home ? Path.Combine(home, ".local") : null);
        prefixes.Add("/usr/local");
        prefixes.Add("/usr");

        var result = new List<string>();
        foreach (var entry in (Environment.GetEnvironmentVariable("PYTHONPATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            AddDistinct(result, entry);
        }

        foreach (var prefix in prefixes.Distinct(StringComparer.Ordinal))
        {
            foreach (var dir in SitePackagesUnder(prefix))
            {
                AddDistinct(result, dir);
            }
        }

        return result;
    }

    /// <summary><c>prefix/lib/python3.*/site-packages</c> and <c>…/dist-packages</c> (Debian) that exist.</summary>
    internal static IEnumerable<string> SitePackagesUnder(string prefix)
    {
        var lib = Path.Combine(prefix, "lib");
        string[] versions;
        try
        {
            versions = Directory.Exists(lib) ? Directory.GetDirectories(lib, "python3*") : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            versions = [];
        }

        Array.Sort(versions, StringComparer.Ordinal);
        foreach (var version in versions)
        {
            foreach (var name in new[] { "site-packages", "dist-packages" })
            {
                var dir = Path.Combine(version, name);
                if (Directory.Exists(dir))
                {
                    yield return dir;
                }
            }
        }
    }

    private static void AddIfSet(List<string> list, string? value)
    {
        if (!string.IsNullOrWhiteSpace(value))
        {
            list.Add(value.Trim());
        }
    }

    private static void AddDistinct(List<string> list, string value)
    {
        if (!list.Contains(value, StringComparer.Ordinal))
        {
            list.Add(value);
        }
    }
}
