using System.Buffers.Binary;
using System.IO.Compression;

namespace ActorTrain.Examples.Mnist;

/// <summary>
/// An n-dimensional array read from an IDX file (the format of the MNIST database).
/// <see cref="Data"/> holds the elements in row-major order, last dimension fastest.
/// </summary>
public sealed class IdxArray
{
    public IdxArray(byte typeCode, int[] dimensions, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(dimensions);
        ArgumentNullException.ThrowIfNull(data);
        TypeCode = typeCode;
        Dimensions = dimensions;
        Data = data;
    }

    /// <summary>The IDX element type code (0x08 = unsigned byte, the only one supported).</summary>
    public byte TypeCode { get; }

    /// <summary>The size of each dimension, outermost first (e.g. [count, rows, columns]).</summary>
    public int[] Dimensions { get; }

    /// <summary>The elements, row-major.</summary>
    public byte[] Data { get; }

    /// <summary>Number of elements (product of <see cref="Dimensions"/>).</summary>
    public long ElementCount => Dimensions.Aggregate(1L, (acc, d) => acc * d);
}

/// <summary>
/// Reads IDX files: a big-endian header (two zero bytes, an element type code, the number of
/// dimensions, then one big-endian int32 per dimension) followed by the elements. Files may be
/// gzip-compressed; compression is detected by the gzip magic bytes 1f 8b, not by the file name.
/// Every format problem is reported as an <see cref="InvalidDataException"/> whose message starts
/// with the file path and says what is wrong. The gzip layer is checked as far as
/// <see cref="GZipStream"/> checks it: corrupt deflate data and CRC mismatches are reported, while
/// bytes after the last gzip member and a missing gzip trailer are not (the IDX structure inside
/// still is: a stream cut short inside the data shows up as truncated data).
/// </summary>
public static class IdxReader
{
    /// <summary>IDX type code for unsigned bytes.</summary>
    public const byte UnsignedByte = 0x08;

    /// <summary>Largest number of dimensions accepted (the format allows 255; real files use 1 to 4).</summary>
    public const int MaxDimensions = 16;

    /// <summary>Reads the IDX file at <paramref name="path"/>, gzip-compressed or not.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid IDX file of unsigned bytes.</exception>
    public static IdxArray Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"IDX file not found: {path}", path);
        }

        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        Span<byte> signature = stackalloc byte[2];
        int signatureLength = file.ReadAtLeast(signature, 2, throwOnEndOfStream: false);
        file.Position = 0;
        bool gzip = signatureLength == 2 && signature[0] == 0x1f && signature[1] == 0x8b;
        if (!gzip)
        {
            return Parse(file, path, compressed: false);
        }

        using var decompressed = new GZipStream(file, CompressionMode.Decompress, leaveOpen: true);
        return Parse(decompressed, path, compressed: true);
    }

    private static IdxArray Parse(Stream stream, string path, bool compressed)
    {
        string what = compressed ? "decompressed data" : "file";

        Span<byte> head = stackalloc byte[4];
        int got = Fill(stream, head, path, compressed);
        if (got < 4)
        {
            throw Error(path, $"too short for the IDX header: the {what} has {got} byte(s), the header needs at least 4");
        }

        if (head[0] != 0 || head[1] != 0)
        {
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(head);
            throw Error(path, $"bad magic number 0x{magic:X8}: the first two bytes of an IDX file must be zero (is this an IDX file?)");
        }

        byte typeCode = head[2];
        if (typeCode != UnsignedByte)
        {
            string known = TypeName(typeCode) is { } name
                ? $"element type 0x{typeCode:X2} ({name}) is not supported"
                : $"unknown element type code 0x{typeCode:X2}";
            throw Error(path, $"{known}; only 0x{UnsignedByte:X2} (unsigned byte) is supported");
        }

        int rank = head[3];
        if (rank == 0)
        {
            throw Error(path, "the header declares 0 dimensions; at least 1 is required");
        }

        if (rank > MaxDimensions)
        {
            throw Error(path, $"the header declares {rank} dimensions, more than the maximum of {MaxDimensions}");
        }

        int headerLength = 4 + 4 * rank;
        Span<byte> dimBytes = stackalloc byte[4 * rank];
        got = Fill(stream, dimBytes, path, compressed);
        if (got < dimBytes.Length)
        {
            throw Error(path, $"too short for the IDX header: the header declares {rank} dimension(s) and needs {headerLength} bytes, the {what} has {4 + got}");
        }

        var dimensions = new int[rank];
        long elements = 1;
        for (int i = 0; i < rank; i++)
        {
            uint size = BinaryPrimitives.ReadUInt32BigEndian(dimBytes.Slice(4 * i, 4));
            if (size > int.MaxValue)
            {
                throw Error(path, $"dimension {i} has size {size}, which exceeds the maximum of {int.MaxValue}");
            }

            dimensions[i] = (int)size;
            elements *= size;
            if (elements > Array.MaxLength)
            {
                throw Error(path, $"dimension overflow: the dimensions [{string.Join(", ", DeclaredSizes(dimBytes, rank))}] give more than {Array.MaxLength} elements");
            }
        }

        int expected = (int)elements;
        byte[] data = ReadData(stream, path, compressed, expected, out int found);
        if (found < expected)
        {
            string hint = compressed ? " (the gzip stream may be truncated)" : string.Empty;
            throw Error(path, $"truncated data: expected {expected} bytes of data after the header, found {found}{hint}");
        }

        long trailing = CountRemaining(stream, path, compressed);
        if (trailing > 0)
        {
            throw Error(path, $"trailing garbage: {trailing} byte(s) after the {expected} bytes of data that the header [{string.Join(", ", dimensions)}] declares");
        }

        return new IdxArray(typeCode, dimensions, data);

        static IEnumerable<uint> DeclaredSizes(ReadOnlySpan<byte> bytes, int count)
        {
            var sizes = new uint[count];
            for (int i = 0; i < count; i++)
            {
                sizes[i] = BinaryPrimitives.ReadUInt32BigEndian(bytes.Slice(4 * i, 4));
            }

            return sizes;
        }
    }

    /// <summary>
    /// Reads up to <paramref name="expected"/> bytes. The buffer grows with the data actually
    /// present, so a header that claims a huge size on a short file does not allocate it all.
    /// </summary>
    private static byte[] ReadData(Stream stream, string path, bool compressed, int expected, out int found)
    {
        const int initialChunk = 1 << 20;
        int capacity = stream.CanSeek && !compressed
            ? (int)Math.Min(expected, Math.Max(0, stream.Length - stream.Position))
            : Math.Min(expected, initialChunk);
        var buffer = new byte[capacity];
        found = 0;
        while (true)
        {
            if (found == buffer.Length)
            {
                if (buffer.Length == expected)
                {
                    break;
                }

                long grown = Math.Min(expected, Math.Max((long)buffer.Length * 2, initialChunk));
                Array.Resize(ref buffer, (int)grown);
            }

            int n = Fill(stream, buffer.AsSpan(found), path, compressed);
            found += n;
            if (n == 0 || found < buffer.Length)
            {
                break; // end of stream
            }
        }

        return buffer;
    }

    private static long CountRemaining(Stream stream, string path, bool compressed)
    {
        if (stream.CanSeek && !compressed)
        {
            return stream.Length - stream.Position;
        }

        long count = 0;
        var scratch = new byte[1 << 16];
        int n;
        while ((n = Fill(stream, scratch, path, compressed)) > 0)
        {
            count += n;
        }

        return count;
    }

    /// <summary>Reads until <paramref name="buffer"/> is full or the stream ends; returns the count.</summary>
    private static int Fill(Stream stream, Span<byte> buffer, string path, bool compressed)
    {
        try
        {
            return stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e) when (compressed)
        {
            throw Error(path, $"corrupt gzip data: {e.Message}", e);
        }
    }

    private static string? TypeName(byte code) => code switch
    {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "int16",
        0x0C => "int32",
        0x0D => "float32",
        0x0E => "float64",
        _ => null,
    };

    private static InvalidDataException Error(string path, string problem, Exception? inner = null) =>
        new($"{path}: not a valid IDX file: {problem}", inner);
}
