using ActorTrain.Examples.Mnist;
using static ActorTrain.TrainerActors.Tests.Data.DataTestSupport;

namespace ActorTrain.TrainerActors.Tests.Data;

public sealed class ShippedMnistDataTests
{
    private static readonly int[] TrainPerClass = [901, 1027, 891, 932, 880, 763, 914, 970, 844, 878];

    [Fact]
    public void TrainingSetHas9000Digits()
    {
        MnistDataset train = MnistDataset.LoadFromDirectory(MnistDataDirectory, train: true);

        Assert.Equal(9000, train.Count);
        Assert.Equal(28, train.Rows);
        Assert.Equal(28, train.Columns);
        Assert.Equal(9000 * 28 * 28, train.Pixels.Length);
        Assert.Equal(9000, train.Labels.Length);
        Assert.Equal(TrainPerClass, CountPerClass(train));
    }

    [Fact]
    public void TestSetHas1000Digits()
    {
        MnistDataset test = MnistDataset.LoadFromDirectory(MnistDataDirectory, train: false);

        Assert.Equal(1000, test.Count);
        Assert.Equal(28, test.Rows);
        Assert.Equal(28, test.Columns);
        Assert.All(CountPerClass(test), c => Assert.Equal(100, c));
    }

    [Fact]
    public void TrainingSetClassesAreMixed()
    {
        MnistDataset train = MnistDataset.LoadFromDirectory(MnistDataDirectory, train: true);

        // Shuffled: every class shows up among the first 100 digits.
        Assert.Equal(10, train.Labels.Take(100).Distinct().Count());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PixelStatisticsArePlausible(bool trainSet)
    {
        MnistDataset data = MnistDataset.LoadFromDirectory(MnistDataDirectory, trainSet);

        double mean = data.Pixels.Average(p => (double)p) / 255.0;
        Assert.InRange(mean, 0.11, 0.15); // full MNIST: 0.1307

        double variance = data.Pixels.Average(p => Math.Pow((p / 255.0) - mean, 2));
        Assert.InRange(Math.Sqrt(variance), 0.27, 0.34); // full MNIST: 0.3081

        Assert.Equal(255, data.Pixels.Max());
        Assert.Equal(0, data.Pixels.Min());

        // Every image has ink.
        for (int i = 0; i < data.Count; i++)
        {
            ReadOnlySpan<byte> image = data.Pixels.AsSpan(i * 784, 784);
            Assert.True(image.IndexOfAnyExcept((byte)0) >= 0, $"image {i} is blank");
        }
    }

    [Fact]
    public void LoadWithExplicitPaths()
    {
        string dir = MnistDataDirectory;
        MnistDataset test = MnistDataset.Load(
            Path.Combine(dir, "t10k-images-idx3-ubyte.gz"), Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"));

        Assert.Equal(1000, test.Count);
        Assert.Equal(0, test.Labels[0]); // the test set is stored in class order
        Assert.Equal(9, test.Labels[999]);
    }

    private static int[] CountPerClass(MnistDataset data)
    {
        var counts = new int[10];
        foreach (byte label in data.Labels)
        {
            counts[label]++;
        }

        return counts;
    }
}

public sealed class MnistDatasetTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private (string Images, string Labels) WriteSet(string prefix, int count, int rows, int cols, Func<int, byte>? label = null, bool gzip = true)
    {
        var pixels = new byte[count * rows * cols];
        for (int i = 0; i < pixels.Length; i++)
        {
            pixels[i] = (byte)(i * 7);
        }

        byte[] labels = Enumerable.Range(0, count).Select(i => label?.Invoke(i) ?? (byte)(i % 10)).ToArray();
        byte[] imageFile = Idx(0x08, [(uint)count, (uint)rows, (uint)cols], pixels);
        byte[] labelFile = Idx(0x08, [(uint)count], labels);
        string ext = gzip ? ".gz" : string.Empty;
        return (
            _temp.Write($"{prefix}-images-idx3-ubyte{ext}", gzip ? Gzip(imageFile) : imageFile),
            _temp.Write($"{prefix}-labels-idx1-ubyte{ext}", gzip ? Gzip(labelFile) : labelFile));
    }

    [Fact]
    public void LoadsSmallSet()
    {
        (string images, string labels) = WriteSet("train", 5, 3, 2);

        MnistDataset data = MnistDataset.Load(images, labels);

        Assert.Equal(5, data.Count);
        Assert.Equal(3, data.Rows);
        Assert.Equal(2, data.Columns);
        Assert.Equal(6, data.PixelsPerImage);
        Assert.Equal([0, 1, 2, 3, 4], data.Labels);
        Assert.Equal((byte)(7 * 7), data.Pixels[7]);
    }

    [Fact]
    public void LoadFromDirectoryAcceptsUncompressedNames()
    {
        WriteSet("t10k", 4, 2, 2, gzip: false);

        MnistDataset data = MnistDataset.LoadFromDirectory(_temp.Path, train: false);

        Assert.Equal(4, data.Count);
    }

    [Fact]
    public void LoadFromDirectoryListsWhatItLookedFor()
    {
        WriteSet("t10k", 4, 2, 2);

        var e = Assert.Throws<FileNotFoundException>(() => MnistDataset.LoadFromDirectory(_temp.Path, train: true));

        Assert.Contains(_temp.Path, e.Message);
        Assert.Contains("train-images-idx3-ubyte.gz", e.Message);
        Assert.Contains("train-images-idx3-ubyte,", e.Message);
    }

    [Fact]
    public void LoadFromDirectoryMissingLabels()
    {
        (_, string labels) = WriteSet("train", 4, 2, 2);
        File.Delete(labels);

        var e = Assert.Throws<FileNotFoundException>(() => MnistDataset.LoadFromDirectory(_temp.Path, train: true));

        Assert.Contains("train-labels-idx1-ubyte.gz", e.Message);
    }

    [Fact]
    public void LoadFromMissingDirectory()
    {
        string dir = Path.Combine(_temp.Path, "absent");
        var e = Assert.Throws<DirectoryNotFoundException>(() => MnistDataset.LoadFromDirectory(dir, train: true));
        Assert.Contains(dir, e.Message);
    }

    [Fact]
    public void ImagesMustBeThreeDimensional()
    {
        (_, string labels) = WriteSet("train", 4, 2, 2);

        var e = Assert.Throws<InvalidDataException>(() => MnistDataset.Load(labels, labels));

        Assert.Contains(labels, e.Message);
        Assert.Contains("expected a 3-dimensional", e.Message);
    }

    [Fact]
    public void LabelsMustBeOneDimensional()
    {
        (string images, _) = WriteSet("train", 4, 2, 2);

        var e = Assert.Throws<InvalidDataException>(() => MnistDataset.Load(images, images));

        Assert.Contains("expected a 1-dimensional", e.Message);
    }

    [Fact]
    public void CountsMustMatch()
    {
        (string images, _) = WriteSet("train", 4, 2, 2);
        (_, string labels) = WriteSet("t10k", 5, 2, 2);

        var e = Assert.Throws<InvalidDataException>(() => MnistDataset.Load(images, labels));

        Assert.Contains(labels, e.Message);
        Assert.Contains(images, e.Message);
        Assert.Contains("5 labels", e.Message);
        Assert.Contains("4 images", e.Message);
    }

    [Fact]
    public void LabelsMustBeDigits()
    {
        (string images, string labels) = WriteSet("train", 4, 2, 2, label: i => i == 2 ? (byte)10 : (byte)1);

        var e = Assert.Throws<InvalidDataException>(() => MnistDataset.Load(images, labels));

        Assert.Contains(labels, e.Message);
        Assert.Contains("label 10 at index 2", e.Message);
    }

    [Fact]
    public void ReaderErrorsNameTheFile()
    {
        (string images, _) = WriteSet("train", 4, 2, 2);
        string labels = _temp.Write("broken-labels", Idx(0x08, [4], [1, 2]));

        var e = Assert.Throws<InvalidDataException>(() => MnistDataset.Load(images, labels));

        Assert.Contains(labels, e.Message);
        Assert.Contains("expected 4 bytes of data after the header, found 2", e.Message);
    }

    [Fact]
    public void CopyBatchNormalizesInNchwOrder()
    {
        // Image i has pixels 10*i + p (p = 0..5), 2 rows × 3 columns.
        const int count = 4;
        var pixels = new byte[count * 6];
        for (int i = 0; i < count; i++)
        {
            for (int p = 0; p < 6; p++)
            {
                pixels[(i * 6) + p] = (byte)((10 * i) + p);
            }
        }

        var data = new MnistDataset(count, 2, 3, pixels, [3, 1, 4, 1]);
        int[] indices = [2, 0, 2];
        var images = new float[3 * 6];
        var labels = new long[3];
        const float mean = 0.1307f, std = 0.3081f;

        data.CopyBatch(indices, images, labels, mean, std);

        Assert.Equal([4L, 3L, 4L], labels);
        for (int b = 0; b < indices.Length; b++)
        {
            for (int p = 0; p < 6; p++)
            {
                float expected = (((10 * indices[b]) + p) / 255f - mean) / std;
                Assert.Equal(expected, images[(b * 6) + p], 5);
            }
        }
    }

    [Fact]
    public void CopyBatchExtremes()
    {
        var data = new MnistDataset(1, 1, 2, [0, 255], [0]);
        var images = new float[2];
        var labels = new long[1];

        data.CopyBatch([0], images, labels, mean: 0.5f, std: 0.5f);

        Assert.Equal(-1f, images[0], 6);
        Assert.Equal(1f, images[1], 6);
    }

    [Fact]
    public void CopyBatchValidatesArguments()
    {
        var data = new MnistDataset(2, 2, 2, new byte[8], [0, 1]);

        Assert.Throws<ArgumentException>(() => data.CopyBatch([0, 1], new float[4], new long[2], 0, 1));
        Assert.Throws<ArgumentException>(() => data.CopyBatch([0, 1], new float[8], new long[1], 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.CopyBatch([0, 2], new float[8], new long[2], 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.CopyBatch([-1], new float[4], new long[1], 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.CopyBatch([0], new float[4], new long[1], 0, 0));
    }

    [Fact]
    public void ConstructorValidates()
    {
        Assert.Throws<ArgumentException>(() => new MnistDataset(2, 2, 2, new byte[7], [0, 1]));
        Assert.Throws<ArgumentException>(() => new MnistDataset(2, 2, 2, new byte[8], [0]));
        Assert.Throws<ArgumentException>(() => new MnistDataset(2, 2, 2, new byte[8], [0, 10]));
    }
}
