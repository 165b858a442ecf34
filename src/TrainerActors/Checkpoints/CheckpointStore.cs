using System.Globalization;
using System.Text.RegularExpressions;

namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>One checkpoint file in a directory, by the global step in its name.</summary>
internal sealed record CheckpointFile(string Path, long GlobalStep);

/// <summary>
/// The outcome of <see cref="CheckpointStore.LoadNewestValid"/>: the newest checkpoint that verified
/// (none when the directory holds none), and one warning per newer file that did not.
/// </summary>
internal sealed record LoadResult(TrainingState? State, string? Path, IReadOnlyList<string> Warnings)
{
    public bool Found => State is not null;
}

/// <summary>
/// A directory of checkpoints named <c>ckpt-{globalStep:D9}.atc</c>. Each save is atomic (a temp
/// file in the same directory, flushed to disk, renamed over the final name) and keeps the newest
/// <see cref="Keep"/>. One writer per directory.
/// </summary>
internal sealed partial class CheckpointStore
{
    public const string Extension = ".atc";
    private const string TempSuffix = ".tmp";

    public CheckpointStore(string dir, int keep)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dir);
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        Dir = dir;
        Keep = keep;
    }

    public string Dir { get; }
    public int Keep { get; }

    /// <summary>Opens the temp file; tests substitute a stream that fails like a full disk.</summary>
    internal Func<string, Stream> OpenTemp { get; init; } = path =>
        new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);

    public static string FileName(long globalStep) =>
        $"ckpt-{globalStep.ToString("D9", CultureInfo.InvariantCulture)}{Extension}";

    /// <summary>Writes the checkpoint and prunes older ones; returns its path.</summary>
    /// <exception cref="CheckpointWriteException">The directory is unwritable, the disk is full, or another I/O error.</exception>
    public string Save(TrainingState state)
    {
        state.Validate();
        var path = Path.Combine(Dir, FileName(state.GlobalStep));
        var temp = $"{path}.{Guid.NewGuid():N}{TempSuffix}";
        try
        {
            Directory.CreateDirectory(Dir);
            using (var stream = OpenTemp(temp))
            {
                CheckpointFormat.Write(stream, state);
                if (stream is FileStream file) file.Flush(flushToDisk: true);
                else stream.Flush();
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new CheckpointWriteException(path, Describe(e), e);
        }
        Prune(keepAlso: path);
        return path;
    }

    /// <summary>
    /// The newest checkpoint that verifies. Each newer one that does not (truncated, corrupt,
    /// unreadable) adds a warning naming the file and the fault. Leftover temp files are ignored.
    /// </summary>
    public LoadResult LoadNewestValid()
    {
        var warnings = new List<string>();
        foreach (var file in List(Dir))
        {
            try
            {
                var state = CheckpointFormat.Read(file.Path);
                if (state.GlobalStep != file.GlobalStep)
                    throw new InvalidCheckpointException(file.Path, $"its name says step {file.GlobalStep} but it holds step {state.GlobalStep}");
                return new LoadResult(state, file.Path, warnings);
            }
            catch (InvalidCheckpointException e)
            {
                warnings.Add($"skipping checkpoint {e.Path}: {e.Reason}");
            }
        }
        return new LoadResult(null, null, warnings);
    }

    /// <summary>Deletes all but the newest <see cref="Keep"/> checkpoints, and leftover temp files; returns what it deleted.</summary>
    public IReadOnlyList<string> Prune() => Prune(keepAlso: null);

    private IReadOnlyList<string> Prune(string? keepAlso)
    {
        var deleted = new List<string>();
        // The file just written stays even when newer (say, corrupt) ones outrank it.
        foreach (var file in List(Dir).Skip(Keep).Where(f => f.Path != keepAlso))
            if (TryDelete(file.Path)) deleted.Add(file.Path);
        foreach (var temp in ListTempFiles(Dir))
            if (TryDelete(temp)) deleted.Add(temp);
        return deleted;
    }

    /// <summary>The checkpoints in <paramref name="dir"/>, newest (highest step) first; empty when the directory is missing.</summary>
    public static IReadOnlyList<CheckpointFile> List(string dir)
    {
        if (!Directory.Exists(dir)) return [];
        var files = new List<CheckpointFile>();
        foreach (var path in Directory.EnumerateFiles(dir, "ckpt-*" + Extension))
        {
            var match = CheckpointName().Match(Path.GetFileName(path));
            if (match.Success && long.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var step))
                files.Add(new CheckpointFile(path, step));
        }
        files.Sort((a, b) => b.GlobalStep.CompareTo(a.GlobalStep));
        return files;
    }

    /// <summary>The newest checkpoint's file by name alone (not verified), or null.</summary>
    public static CheckpointFile? Newest(string dir) => List(dir).FirstOrDefault();

    private static IEnumerable<string> ListTempFiles(string dir) =>
        Directory.Exists(dir) ? Directory.EnumerateFiles(dir, "ckpt-*" + Extension + ".*" + TempSuffix).ToList() : [];

    private static string Describe(Exception e) => e switch
    {
        IOException io when IsDiskFull(io) => $"the disk is full ({e.Message})",
        UnauthorizedAccessException => $"permission denied ({e.Message})",
        _ => e.Message,
    };

    /// <summary>ENOSPC on Unix (the HResult is the errno); ERROR_DISK_FULL or ERROR_HANDLE_DISK_FULL on Windows.</summary>
    internal static bool IsDiskFull(IOException e)
    {
        const int enospc = 28, errorDiskFull = 0x70, errorHandleDiskFull = 0x27;
        var code = e.HResult;
        return OperatingSystem.IsWindows()
            ? (uint)code >> 16 == 0x8007 && (code & 0xFFFF) is errorDiskFull or errorHandleDiskFull
            : code == enospc;
    }

    private static bool TryDelete(string path)
    {
        try
        {
            if (!File.Exists(path)) return false;
            File.Delete(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // retried at the next save
        }
    }

    [GeneratedRegex(@"^ckpt-(\d{9,18})\.atc$", RegexOptions.CultureInvariant)]
    private static partial Regex CheckpointName();
}
