using ActorTrain.Examples.Mnist;
using static ActorTrain.TrainerActors.Tests.Data.DataTestSupport;

namespace ActorTrain.TrainerActors.Tests.Data;

public sealed class IdxReaderTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static InvalidDataException AssertInvalid(string path, params string[] fragments)
    {
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.Read(path));
        Assert.Contains(path, e.Message);
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, e.Message);
        }

        return e;
    }

    [Fact]
    public void ReadsRawFile()
    {
        byte[] data = Enumerable.Range(0, 2 * 3 * 4).Select(i => (byte)i).ToArray();
        string path = _temp.Write("a.idx", Idx(0x08, [2, 3, 4], data));

        IdxArray array = IdxReader.Read(path);

        Assert.Equal(IdxReader.UnsignedByte, array.TypeCode);
        Assert.Equal([2, 3, 4], array.Dimensions);
        Assert.Equal(data, array.Data);
        Assert.Equal(24, array.ElementCount);
    }

    [Fact]
    public void DetectsGzipByContentNotByName()
    {
        byte[] data = [1, 2, 3, 4, 5];
        string gzipWithoutExtension = _temp.Write("labels-idx1-ubyte", Gzip(Idx(0x08, [5], data)));
        string rawWithGzExtension = _temp.Write("labels-idx1-ubyte.gz", Idx(0x08, [5], data));

        Assert.Equal(data, IdxReader.Read(gzipWithoutExtension).Data);
        Assert.Equal(data, IdxReader.Read(rawWithGzExtension).Data);
    }

    [Fact]
    public void ReadsEmptyArray()
    {
        string path = _temp.Write("empty.idx", Idx(0x08, [0, 28, 28], []));

        IdxArray array = IdxReader.Read(path);

        Assert.Equal([0, 28, 28], array.Dimensions);
        Assert.Empty(array.Data);
    }

    [Fact]
    public void MissingFile()
    {
        string path = Path.Combine(_temp.Path, "nope-idx1-ubyte.gz");
        var e = Assert.Throws<FileNotFoundException>(() => IdxReader.Read(path));
        Assert.Equal(path, e.FileName);
        Assert.Contains(path, e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    public void TooShortForHeader(int length)
    {
        string path = _temp.Write("short.idx", new byte[length]);
        AssertInvalid(path, "too short for the IDX header", $"has {length} byte(s)");
    }

    [Fact]
    public void TooShortForDimensions()
    {
        // Declares 3 dimensions (needs 16 header bytes) but has only 8.
        string path = _temp.Write("short-dims.idx", [0, 0, 0x08, 3, 0, 0, 0, 1]);
        AssertInvalid(path, "too short for the IDX header", "needs 16 bytes", "has 8");
    }

    [Fact]
    public void BadMagic()
    {
        string path = _temp.Write("png.idx", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        AssertInvalid(path, "bad magic number 0x89504E47", "first two bytes");
    }

    [Fact]
    public void BadMagicSecondByte()
    {
        string path = _temp.Write("bad.idx", [0, 1, 0x08, 1, 0, 0, 0, 0]);
        AssertInvalid(path, "bad magic number 0x00010801");
    }

    [Fact]
    public void UnsupportedKnownType()
    {
        string path = _temp.Write("float.idx", Idx(0x0D, [1], [0, 0, 0, 0]));
        AssertInvalid(path, "element type 0x0D (float32) is not supported", "only 0x08");
    }

    [Fact]
    public void UnknownTypeCode()
    {
        string path = _temp.Write("odd.idx", Idx(0x42, [1], [0]));
        AssertInvalid(path, "unknown element type code 0x42");
    }

    [Fact]
    public void ZeroDimensions()
    {
        string path = _temp.Write("zero.idx", [0, 0, 0x08, 0, 1, 2, 3]);
        AssertInvalid(path, "declares 0 dimensions");
    }

    [Fact]
    public void AbsurdDimensionCount()
    {
        var bytes = new byte[4 + (4 * 255)];
        bytes[2] = 0x08;
        bytes[3] = 255;
        string path = _temp.Write("many.idx", bytes);
        AssertInvalid(path, "declares 255 dimensions", $"maximum of {IdxReader.MaxDimensions}");
    }

    [Fact]
    public void DimensionSizeAboveInt32()
    {
        string path = _temp.Write("huge.idx", Idx(0x08, [0x80000000], []));
        AssertInvalid(path, "dimension 0 has size 2147483648");
    }

    [Fact]
    public void DimensionOverflow()
    {
        string path = _temp.Write("overflow.idx", Idx(0x08, [65536, 65536, 65536], [1, 2, 3]));
        AssertInvalid(path, "dimension overflow", "65536, 65536, 65536");
    }

    [Fact]
    public void TruncatedData()
    {
        string path = _temp.Write("truncated.idx", Idx(0x08, [10], [1, 2, 3, 4, 5]));
        AssertInvalid(path, "truncated data", "expected 10 bytes of data after the header, found 5");
    }

    [Fact]
    public void TruncatedDataLargeClaim()
    {
        // The header claims 60000 × 28 × 28 bytes; only 100 are there.
        string path = _temp.Write("truncated-large.idx", Idx(0x08, [60000, 28, 28], new byte[100]));
        AssertInvalid(path, "expected 47040000 bytes of data after the header, found 100");
    }

    [Fact]
    public void TruncatedDataInsideGzip()
    {
        string path = _temp.Write("truncated.gz", Gzip(Idx(0x08, [2, 28, 28], new byte[784])));
        AssertInvalid(path, "expected 1568 bytes of data after the header, found 784");
    }

    [Fact]
    public void TruncatedGzipStream()
    {
        byte[] gz = Gzip(Idx(0x08, [50, 28, 28], Enumerable.Range(0, 50 * 784).Select(i => (byte)(i * 31 % 251)).ToArray()));
        string path = _temp.Write("cut.gz", gz[..(gz.Length / 2)]);
        AssertInvalid(path, "expected 39200 bytes of data after the header, found", "gzip stream may be truncated");
    }

    [Fact]
    public void TrailingGarbage()
    {
        string path = _temp.Write("trailing.idx", Idx(0x08, [4], [1, 2, 3, 4, 5, 6, 7]));
        AssertInvalid(path, "trailing garbage", "3 byte(s) after the 4 bytes of data");
    }

    [Fact]
    public void TrailingGarbageInsideGzip()
    {
        string path = _temp.Write("trailing.gz", Gzip(Idx(0x08, [4], [1, 2, 3, 4, 5])));
        AssertInvalid(path, "trailing garbage", "1 byte(s) after the 4 bytes of data");
    }

    [Fact]
    public void CorruptGzip()
    {
        byte[] gz = Gzip(Idx(0x08, [100], Enumerable.Range(0, 100).Select(i => (byte)i).ToArray()));
        for (int i = 10; i < gz.Length - 8; i++)
        {
            gz[i] ^= 0x5A; // scramble the deflate stream
        }

        string path = _temp.Write("corrupt.gz", gz);
        AssertInvalid(path, "corrupt gzip data");
    }

    [Fact]
    public void GzipWithBadChecksum()
    {
        byte[] gz = Gzip(Idx(0x08, [3], [7, 8, 9]));
        gz[^8] ^= 0xFF; // CRC32 of the trailer
        string path = _temp.Write("bad-crc.gz", gz);
        AssertInvalid(path, "corrupt gzip data");
    }

    [Fact]
    public void GzipMagicOnly()
    {
        string path = _temp.Write("stub.gz", [0x1f, 0x8b]);
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.Read(path));
        Assert.Contains(path, e.Message);
    }
}
