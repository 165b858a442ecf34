namespace ActorTrain.Examples.Mnist;

/// <summary>
/// MNIST-style images and labels held in memory as bytes: <see cref="Count"/> grayscale images of
/// <see cref="Rows"/> × <see cref="Columns"/> pixels (0..255) and one label (0..9) per image.
/// </summary>
public sealed class MnistDataset
{
    /// <summary>Mean of the full MNIST training set pixels scaled to 0..1 (the usual normalization constant).</summary>
    public const float DefaultMean = 0.1307f;

    /// <summary>Standard deviation of the full MNIST training set pixels scaled to 0..1.</summary>
    public const float DefaultStd = 0.3081f;

    /// <summary>Number of label classes (digits 0..9).</summary>
    public const int ClassCount = 10;

    /// <summary>Wraps in-memory data; <paramref name="pixels"/> is row-major, image after image.</summary>
    public MnistDataset(int count, int rows, int columns, byte[] pixels, byte[] labels)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(columns);
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentNullException.ThrowIfNull(labels);
        if ((long)count * rows * columns != pixels.Length)
        {
            throw new ArgumentException($"Expected {count} × {rows} × {columns} = {(long)count * rows * columns} pixels, got {pixels.Length}.", nameof(pixels));
        }

        if (labels.Length != count)
        {
            throw new ArgumentException($"Expected {count} labels, got {labels.Length}.", nameof(labels));
        }

        int bad = Array.FindIndex(labels, l => l >= ClassCount);
        if (bad >= 0)
        {
            throw new ArgumentException($"Label {labels[bad]} at index {bad} is out of range 0..{ClassCount - 1}.", nameof(labels));
        }

        Count = count;
        Rows = rows;
        Columns = columns;
        Pixels = pixels;
        Labels = labels;
    }

    /// <summary>Number of images.</summary>
    public int Count { get; }

    /// <summary>Image height in pixels.</summary>
    public int Rows { get; }

    /// <summary>Image width in pixels.</summary>
    public int Columns { get; }

    /// <summary>Pixels per image (<see cref="Rows"/> × <see cref="Columns"/>).</summary>
    public int PixelsPerImage => Rows * Columns;

    /// <summary>All pixels, <see cref="Count"/> × <see cref="Rows"/> × <see cref="Columns"/> bytes, row-major.</summary>
    public byte[] Pixels { get; }

    /// <summary>One label (0..9) per image.</summary>
    public byte[] Labels { get; }

    /// <summary>
    /// Loads an images IDX file (3-D: count, rows, columns) and a labels IDX file (1-D: count),
    /// gzip-compressed or not. Errors are <see cref="InvalidDataException"/>s naming the file at fault.
    /// </summary>
    public static MnistDataset Load(string imagesPath, string labelsPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(imagesPath);
        ArgumentException.ThrowIfNullOrEmpty(labelsPath);

        IdxArray images = IdxReader.Read(imagesPath);
        if (images.Dimensions.Length != 3)
        {
            throw new InvalidDataException(
                $"{imagesPath}: expected a 3-dimensional IDX array of images (count, rows, columns), found {Describe(images.Dimensions)}");
        }

        if (images.Dimensions[1] == 0 || images.Dimensions[2] == 0)
        {
            throw new InvalidDataException(
                $"{imagesPath}: images must have at least one row and one column, found {images.Dimensions[1]} × {images.Dimensions[2]}");
        }

        IdxArray labels = IdxReader.Read(labelsPath);
        if (labels.Dimensions.Length != 1)
        {
            throw new InvalidDataException(
                $"{labelsPath}: expected a 1-dimensional IDX array of labels, found {Describe(labels.Dimensions)}");
        }

        int count = images.Dimensions[0];
        if (labels.Dimensions[0] != count)
        {
            throw new InvalidDataException(
                $"{labelsPath}: holds {labels.Dimensions[0]} labels but {imagesPath} holds {count} images; the counts must be equal");
        }

        byte[] labelBytes = labels.Data;
        for (int i = 0; i < labelBytes.Length; i++)
        {
            if (labelBytes[i] >= ClassCount)
            {
                throw new InvalidDataException(
                    $"{labelsPath}: label {labelBytes[i]} at index {i} is out of range 0..{ClassCount - 1}");
            }
        }

        return new MnistDataset(count, images.Dimensions[1], images.Dimensions[2], images.Data, labelBytes);
    }

    /// <summary>
    /// File names tried, in order, for the images and labels of the training set
    /// (<c>train-*</c>) or the test set (<c>t10k-*</c>).
    /// </summary>
    public static (string[] Images, string[] Labels) CandidateFileNames(bool train)
    {
        string prefix = train ? "train" : "t10k";
        return (Candidates(prefix, "images", "idx3"), Candidates(prefix, "labels", "idx1"));

        static string[] Candidates(string prefix, string kind, string idx) =>
        [
            $"{prefix}-{kind}-{idx}-ubyte.gz",
            $"{prefix}-{kind}-{idx}-ubyte",
            $"{prefix}-{kind}.{idx}-ubyte.gz",
            $"{prefix}-{kind}.{idx}-ubyte",
        ];
    }

    /// <summary>
    /// Loads the training set (<c>train-images-idx3-ubyte[.gz]</c>, <c>train-labels-idx1-ubyte[.gz]</c>) or
    /// the test set (<c>t10k-…</c>) from <paramref name="directory"/>, compressed or not.
    /// </summary>
    public static MnistDataset LoadFromDirectory(string directory, bool train)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"MNIST data directory not found: {directory}");
        }

        (string[] imageNames, string[] labelNames) = CandidateFileNames(train);
        string set = train ? "training" : "test";
        string images = Find(directory, imageNames, $"MNIST {set} images");
        string labels = Find(directory, labelNames, $"MNIST {set} labels");
        return Load(images, labels);

        static string Find(string directory, string[] names, string what)
        {
            foreach (string name in names)
            {
                string path = Path.Combine(directory, name);
                if (File.Exists(path))
                {
                    return path;
                }
            }

            throw new FileNotFoundException(
                $"{what} not found in {directory}: looked for {string.Join(", ", names)}");
        }
    }

    /// <summary>
    /// Copies the images and labels at <paramref name="indices"/> into a batch: <paramref name="images"/>
    /// receives indices.Length × 1 × Rows × Columns floats in NCHW order, each pixel normalized as
    /// ((p / 255) − <paramref name="mean"/>) / <paramref name="std"/>; <paramref name="labels"/> receives
    /// one label per index. The spans must have exactly those lengths.
    /// </summary>
    public void CopyBatch(ReadOnlySpan<int> indices, Span<float> images, Span<long> labels, float mean, float std)
    {
        if (!float.IsFinite(std) || std <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(std), std, "The standard deviation must be a positive finite number.");
        }

        if (!float.IsFinite(mean))
        {
            throw new ArgumentOutOfRangeException(nameof(mean), mean, "The mean must be a finite number.");
        }

        int perImage = PixelsPerImage;
        if ((long)indices.Length * perImage != images.Length)
        {
            throw new ArgumentException(
                $"The images span must hold {indices.Length} × {perImage} = {(long)indices.Length * perImage} floats, it holds {images.Length}.",
                nameof(images));
        }

        if (labels.Length != indices.Length)
        {
            throw new ArgumentException(
                $"The labels span must hold {indices.Length} values, it holds {labels.Length}.", nameof(labels));
        }

        Span<float> table = stackalloc float[256];
        for (int v = 0; v < 256; v++)
        {
            table[v] = ((v / 255f) - mean) / std;
        }

        for (int b = 0; b < indices.Length; b++)
        {
            int index = indices[b];
            if ((uint)index >= (uint)Count)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(indices), index, $"Index at batch position {b} is outside the dataset (0..{Count - 1}).");
            }

            ReadOnlySpan<byte> source = Pixels.AsSpan(index * perImage, perImage);
            Span<float> target = images.Slice(b * perImage, perImage);
            for (int p = 0; p < source.Length; p++)
            {
                target[p] = table[source[p]];
            }

            labels[b] = Labels[index];
        }
    }

    private static string Describe(int[] dimensions) =>
        $"{dimensions.Length} dimension(s) [{string.Join(", ", dimensions)}]";
}
