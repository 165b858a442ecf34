using System.Buffers.Binary;
using System.Text;

namespace ActorTrain.TrainerActors.Tests.Reporting;

/// <summary>Reads a PNG's header by hand: signature, then IHDR (with its CRC), and an IEND chunk at the end.</summary>
internal static class PngFile
{
    private static readonly byte[] Signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    public static (int Width, int Height) ReadSize(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 8 + 25 + 12, $"{path} is too short for a PNG ({bytes.Length} bytes)");
        Assert.Equal(Signature, bytes[..8]);

        // First chunk: length 13, type IHDR, width and height big-endian, then the CRC of type + data.
        var span = bytes.AsSpan();
        Assert.Equal(13u, BinaryPrimitives.ReadUInt32BigEndian(span[8..]));
        Assert.Equal("IHDR", Encoding.ASCII.GetString(span[12..16]));
        var width = BinaryPrimitives.ReadUInt32BigEndian(span[16..]);
        var height = BinaryPrimitives.ReadUInt32BigEndian(span[20..]);
        Assert.Equal(Crc32(span[12..29]), BinaryPrimitives.ReadUInt32BigEndian(span[29..]));

        // Last chunk: IEND, empty, with its fixed CRC.
        Assert.Equal("IEND", Encoding.ASCII.GetString(span[^8..^4]));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(span[^12..]));
        Assert.Equal(0xAE426082u, BinaryPrimitives.ReadUInt32BigEndian(span[^4..]));

        return ((int)width, (int)height);
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var bit = 0; bit < 8; bit++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
            }
        }

        return ~crc;
    }
}
