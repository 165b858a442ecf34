using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>
/// The checkpoint file layout (all integers little-endian):
/// <code>
/// magic "ATCKPT\r\n" (8) | format version u32 | header length u32 | header (UTF-8 JSON)
/// | sections, in the header's order | SHA-256 of every byte before it (32)
/// </code>
/// The header holds the training position and each section's name and length. Readers check
/// every declared length against the file's size before allocating anything.
/// </summary>
internal static class CheckpointFormat
{
    public const int FormatVersion = 1;
    /// <summary>"\r\n" in the magic catches files mangled by text-mode line-ending conversion.</summary>
    public static ReadOnlySpan<byte> Magic => "ATCKPT\r\n"u8;
    public const int PrefixLength = 16;
    public const int TrailerLength = 32;
    /// <summary>A header is a few hundred bytes; anything near this is not a header.</summary>
    public const int MaxHeaderLength = 1 << 20;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Writes <paramref name="state"/> to <paramref name="destination"/>; the caller flushes.</summary>
    public static void Write(Stream destination, TrainingState state)
    {
        state.Validate();
        var sections = OrderedSections(state);
        var header = JsonSerializer.SerializeToUtf8Bytes(new Header
        {
            JobId = state.JobId,
            ModelFingerprint = state.ModelFingerprint,
            Epoch = state.Epoch,
            SamplesConsumedInEpoch = state.SamplesConsumedInEpoch,
            GlobalStep = state.GlobalStep,
            WorldSize = state.WorldSize,
            Seed = state.Seed,
            CreatedUtc = state.CreatedUtc,
            Sections = sections.Select(s => new SectionEntry { Name = s.Key, Length = s.Value.LongLength }).ToList(),
        }, Json);
        if (header.Length > MaxHeaderLength)
            throw new ArgumentException($"checkpoint header is {header.Length} bytes, more than {MaxHeaderLength}", nameof(state));

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> prefix = stackalloc byte[PrefixLength];
        Magic.CopyTo(prefix);
        BinaryPrimitives.WriteUInt32LittleEndian(prefix[8..], FormatVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(prefix[12..], (uint)header.Length);
        WriteHashed(destination, hash, prefix);
        WriteHashed(destination, hash, header);
        foreach (var (_, bytes) in sections) WriteHashed(destination, hash, bytes);
        destination.Write(hash.GetHashAndReset());
    }

    /// <summary>Reads and verifies a checkpoint; throws <see cref="InvalidCheckpointException"/> naming the file and the fault.</summary>
    public static TrainingState Read(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
            return Read(stream, path);
        }
        catch (InvalidCheckpointException) { throw; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidCheckpointException(path, $"cannot be read ({e.Message})", e);
        }
    }

    private static TrainingState Read(Stream stream, string path)
    {
        var fileLength = stream.Length;
        InvalidCheckpointException Invalid(string reason) => new(path, reason);

        Span<byte> prefix = stackalloc byte[PrefixLength];
        var prefixRead = stream.ReadAtLeast(prefix, PrefixLength, throwOnEndOfStream: false);
        if (prefixRead >= Magic.Length && !prefix[..Magic.Length].SequenceEqual(Magic))
            throw Invalid("wrong magic bytes: not an ActorTrain checkpoint");
        if (fileLength < PrefixLength + TrailerLength)
            throw Invalid($"truncated: {fileLength} bytes, shorter than the smallest possible checkpoint ({PrefixLength + TrailerLength} bytes)");
        var version = BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]);
        if (version != FormatVersion)
            throw Invalid($"format version {version} is not supported (this build reads version {FormatVersion})");
        var headerLength = BinaryPrimitives.ReadUInt32LittleEndian(prefix[12..]);
        var afterPrefix = fileLength - PrefixLength - TrailerLength;
        if (headerLength > afterPrefix)
            throw Invalid($"truncated or corrupt: header length {headerLength} exceeds the {afterPrefix} bytes the file holds after its prefix");
        if (headerLength > MaxHeaderLength)
            throw Invalid($"corrupt: header length {headerLength} is more than {MaxHeaderLength} bytes");

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(prefix);
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        hash.AppendData(headerBytes);

        var sectionBytes = afterPrefix - headerLength;
        var (header, layoutFault, truncated) = ParseHeader(headerBytes, sectionBytes);
        var sections = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        if (layoutFault is null)
        {
            foreach (var entry in header!.Sections!)
            {
                var bytes = new byte[entry.Length];
                stream.ReadExactly(bytes);
                hash.AppendData(bytes);
                sections.Add(entry.Name!, bytes);
            }
        }
        else
        {
            // Hash the rest anyway: a hash mismatch names corruption better than a garbled header does.
            HashRemaining(stream, hash, sectionBytes);
        }

        Span<byte> trailer = stackalloc byte[TrailerLength];
        stream.ReadExactly(trailer);
        Span<byte> actual = stackalloc byte[TrailerLength];
        hash.GetHashAndReset(actual);
        if (!CryptographicOperations.FixedTimeEquals(actual, trailer))
            throw Invalid(truncated ? layoutFault! : "corrupt: the SHA-256 of the content does not match the one stored in the file");
        if (layoutFault is not null) throw Invalid(layoutFault);

        return new TrainingState
        {
            JobId = header!.JobId!,
            ModelFingerprint = header.ModelFingerprint!,
            Epoch = header.Epoch!.Value,
            SamplesConsumedInEpoch = header.SamplesConsumedInEpoch!.Value,
            GlobalStep = header.GlobalStep!.Value,
            WorldSize = header.WorldSize!.Value,
            Seed = header.Seed!.Value,
            CreatedUtc = header.CreatedUtc!.Value.ToUniversalTime(),
            Sections = sections,
        };
    }

    /// <summary>The header, or what is wrong with it; <c>truncated</c> when it declares more bytes than follow.</summary>
    private static (Header? header, string? fault, bool truncated) ParseHeader(byte[] bytes, long sectionBytes)
    {
        Header? header;
        try { header = JsonSerializer.Deserialize<Header>(bytes, Json); }
        catch (JsonException e) { return (null, $"corrupt: header is not valid JSON ({e.Message})", false); }
        if (header is null) return (null, "corrupt: header is empty", false);

        string? missing =
            header.JobId is null ? "jobId" : header.ModelFingerprint is null ? "modelFingerprint"
            : header.Epoch is null ? "epoch" : header.SamplesConsumedInEpoch is null ? "samplesConsumedInEpoch"
            : header.GlobalStep is null ? "globalStep" : header.WorldSize is null ? "worldSize"
            : header.Seed is null ? "seed" : header.CreatedUtc is null ? "createdUtc"
            : header.Sections is null ? "sections" : null;
        if (missing is not null) return (null, $"corrupt: header lacks \"{missing}\"", false);
        if (header.Epoch < 1 || header.SamplesConsumedInEpoch < 0 || header.GlobalStep < 0 || header.WorldSize < 1)
            return (null, "corrupt: header holds an out-of-range epoch, sample cursor, step or world size", false);

        var names = new HashSet<string>(StringComparer.Ordinal);
        long declared = 0;
        foreach (var s in header.Sections!)
        {
            if (s is null || !TrainingState.IsValidSectionName(s.Name)) return (null, $"corrupt: invalid section name \"{s?.Name}\"", false);
            if (!names.Add(s.Name!)) return (null, $"corrupt: section \"{s.Name}\" appears twice", false);
            if (s.Length < 0) return (null, $"corrupt: section \"{s.Name}\" has negative length {s.Length}", false);
            if (s.Length > sectionBytes - declared)
                return (null, $"truncated: section \"{s.Name}\" declares {s.Length} bytes but only {sectionBytes - declared} remain in the file", true);
            if (s.Length > Array.MaxLength) return (null, $"section \"{s.Name}\" declares {s.Length} bytes, more than one buffer can hold", false);
            declared += s.Length;
        }
        if (declared < sectionBytes)
            return (null, $"corrupt: {sectionBytes - declared} bytes after the declared sections", false);
        return (header, null, false);
    }

    private static void HashRemaining(Stream stream, IncrementalHash hash, long count)
    {
        var buffer = new byte[(int)Math.Min(count, 1 << 20)];
        while (count > 0)
        {
            var n = stream.Read(buffer, 0, (int)Math.Min(count, buffer.Length));
            if (n == 0) throw new EndOfStreamException();
            hash.AppendData(buffer, 0, n);
            count -= n;
        }
    }

    private static void WriteHashed(Stream destination, IncrementalHash hash, ReadOnlySpan<byte> bytes)
    {
        hash.AppendData(bytes);
        destination.Write(bytes);
    }

    /// <summary>Model, then optimizer, then the rest by name: the same state always gives the same bytes.</summary>
    private static List<KeyValuePair<string, byte[]>> OrderedSections(TrainingState state) =>
        state.Sections
            .OrderBy(s => s.Key switch { TrainingState.ModelSection => 0, TrainingState.OptimizerSection => 1, _ => 2 })
            .ThenBy(s => s.Key, StringComparer.Ordinal)
            .ToList();

    private sealed class Header
    {
        public string? JobId { get; set; }
        public string? ModelFingerprint { get; set; }
        public int? Epoch { get; set; }
        public long? SamplesConsumedInEpoch { get; set; }
        public long? GlobalStep { get; set; }
        public int? WorldSize { get; set; }
        public int? Seed { get; set; }
        public DateTime? CreatedUtc { get; set; }
        public List<SectionEntry>? Sections { get; set; }
    }

    private sealed class SectionEntry
    {
        public string? Name { get; set; }
        public long Length { get; set; }
    }
}
