using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.CompilerServices;

namespace ActorTrain.TrainerActors.Tests.Data;

/// <summary>Locates the repository and writes IDX test files.</summary>
internal static class DataTestSupport
{
    /// <summary>
    /// The repository root: the first folder, walking up from the test binaries (and then from this
    /// source file), that holds ActorTrain.sln or examples/Mnist/data.
    /// </summary>
    public static string RepoRoot([CallerFilePath] string sourceFile = "")
    {
        foreach (string? start in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(sourceFile) })
        {
            for (var dir = string.IsNullOrEmpty(start) ? null : new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "ActorTrain.sln"))
                    || Directory.Exists(Path.Combine(dir.FullName, "examples", "Mnist", "data")))
                {
                    return dir.FullName;
                }
            }
        }

        throw new InvalidOperationException(
            $"Cannot find the repository root (ActorTrain.sln or examples/Mnist/data) above {AppContext.BaseDirectory}.");
    }

    public static string MnistDataDirectory => Path.Combine(RepoRoot(), "examples", "Mnist", "data");

    /// <summary>Builds IDX bytes: 00 00 type rank, big-endian dims, data.</summary>
    public static byte[] Idx(byte type, uint[] dims, byte[] data)
    {
        var bytes = new byte[4 + (4 * dims.Length) + data.Length];
        bytes[2] = type;
        bytes[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4 + (4 * i)), dims[i]);
        }

        data.CopyTo(bytes, 4 + (4 * dims.Length));
        return bytes;
    }

    public static byte[] Gzip(byte[] raw)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(raw);
        }

        return output.ToArray();
    }
}

/// <summary>A temporary folder deleted after each test.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = Directory.CreateTempSubdirectory("actortrain-data-tests-").FullName;
    }

    public string Path { get; }

    public string Write(string name, byte[] bytes)
    {
        string file = System.IO.Path.Combine(Path, name);
        File.WriteAllBytes(file, bytes);
        return file;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
