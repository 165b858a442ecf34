namespace ActorTrain.Sync.Buckets;

/// <summary>A model parameter as the bucket layout sees it: a name (unique) and its number of float32 elements.</summary>
internal sealed record ParameterSpec(string Name, int ElementCount);

/// <summary>Where one parameter lives inside its bucket.</summary>
internal readonly record struct BucketEntry(int ParameterIndex, int Offset, int Count);

/// <summary>A position inside the bucket buffers: bucket index and element offset.</summary>
internal readonly record struct BucketPosition(int Bucket, int Offset);

/// <summary>One fusion buffer: the parameters it carries, in the order they are laid out.</summary>
internal sealed class Bucket
{
    internal Bucket(int index, int length, IReadOnlyList<BucketEntry> entries)
    {
        Index = index;
        Length = length;
        Entries = entries;
    }

    /// <summary>Position of the bucket in <see cref="BucketLayout.Buckets"/> (and the bucket id on the wire).</summary>
    public int Index { get; }

    /// <summary>Number of float elements, including any extra elements reserved in the last bucket.</summary>
    public int Length { get; }

    /// <summary>The parameters in this bucket, in buffer order.</summary>
    public IReadOnlyList<BucketEntry> Entries { get; }
}

/// <summary>
/// Assigns model parameters to float32 fusion buckets. Parameters are taken in reverse model
/// order (as PyTorch DDP does) because backward produces the last layer's gradients first, so the
/// first bucket is ready to reduce earliest. A parameter is never split across buckets.
/// </summary>
internal sealed class BucketLayout
{
    private const int BytesPerElement = sizeof(float);

    private readonly int[] bucketOfParameter;
    private readonly BucketEntry[] entryOfParameter;

    private BucketLayout(
        IReadOnlyList<ParameterSpec> parameters,
        IReadOnlyList<Bucket> buckets,
        int[] bucketOfParameter,
        BucketEntry[] entryOfParameter,
        long bucketCapacityBytes,
        int extraElements)
    {
        Parameters = parameters;
        Buckets = buckets;
        this.bucketOfParameter = bucketOfParameter;
        this.entryOfParameter = entryOfParameter;
        BucketCapacityBytes = bucketCapacityBytes;
        ExtraElements = extraElements;
        var last = buckets[^1];
        ExtraOffset = new BucketPosition(last.Index, last.Length - extraElements);
        TotalElements = buckets.Sum(b => (long)b.Length);
    }

    /// <summary>The parameters in model order, as given to <see cref="Create"/>.</summary>
    public IReadOnlyList<ParameterSpec> Parameters { get; }

    /// <summary>The buckets in reduction order (bucket 0 holds the last parameters of the model).</summary>
    public IReadOnlyList<Bucket> Buckets { get; }

    /// <summary>The capacity the layout was built with.</summary>
    public long BucketCapacityBytes { get; }

    /// <summary>Number of floats reserved after the parameters of the last bucket.</summary>
    public int ExtraElements { get; }

    /// <summary>Where the reserved extra elements start (in the last bucket, after its parameters).</summary>
    public BucketPosition ExtraOffset { get; }

    /// <summary>Sum of all bucket lengths, extra elements included.</summary>
    public long TotalElements { get; }

    /// <summary>
    /// Builds the layout. A bucket is filled until the next parameter would push it past
    /// <paramref name="bucketCapacityBytes"/>; a parameter larger than the capacity gets a bucket
    /// of its own. <paramref name="extraElements"/> floats are appended to the last bucket (they do
    /// not count against the capacity) for values that must be reduced together with the gradients.
    /// </summary>
    public static BucketLayout Create(IReadOnlyList<ParameterSpec> parameters, long bucketCapacityBytes, int extraElements = 0)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.Count == 0)
        {
            throw new ArgumentException("A bucket layout needs at least one parameter.", nameof(parameters));
        }

        if (bucketCapacityBytes <= 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(bucketCapacityBytes), bucketCapacityBytes, "Bucket capacity must be a positive number of bytes.");
        }

        if (extraElements < 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(extraElements), extraElements, "Extra elements must be zero or more.");
        }

        ValidateParameters(parameters);

        var buckets = new List<Bucket>();
        var bucketOfParameter = new int[parameters.Count];
        var entryOfParameter = new BucketEntry[parameters.Count];
        var entries = new List<BucketEntry>();
        long length = 0;

        void CloseBucket(int extra)
        {
            long total = length + extra;
            if (total > Array.MaxLength)
            {
                throw new ArgumentException(
                    $"Bucket {buckets.Count} would hold {total} elements, more than one buffer can (at most {Array.MaxLength}).",
                    nameof(parameters));
            }

            buckets.Add(new Bucket(buckets.Count, (int)total, Array.AsReadOnly(entries.ToArray())));
            entries.Clear();
            length = 0;
        }

        for (int p = parameters.Count - 1; p >= 0; p--)
        {
            int count = parameters[p].ElementCount;
            bool wouldOverflow = (length + count) * BytesPerElement > bucketCapacityBytes || length + count > Array.MaxLength;
            if (entries.Count > 0 && wouldOverflow)
            {
                CloseBucket(0);
            }

            var entry = new BucketEntry(p, (int)length, count);
            entries.Add(entry);
            bucketOfParameter[p] = buckets.Count;
            entryOfParameter[p] = entry;
            length += count;
        }

        CloseBucket(extraElements);
        return new BucketLayout(
            Array.AsReadOnly(parameters.ToArray()),
            buckets.AsReadOnly(),
            bucketOfParameter,
            entryOfParameter,
            bucketCapacityBytes,
            extraElements);
    }

    /// <summary>Index of the bucket that holds parameter <paramref name="parameterIndex"/>.</summary>
    public int BucketOfParameter(int parameterIndex)
    {
        RequireParameterIndex(parameterIndex);
        return bucketOfParameter[parameterIndex];
    }

    /// <summary>Offset and count of parameter <paramref name="parameterIndex"/> inside its bucket.</summary>
    public BucketEntry EntryOfParameter(int parameterIndex)
    {
        RequireParameterIndex(parameterIndex);
        return entryOfParameter[parameterIndex];
    }

    /// <summary>
    /// Copies every parameter of bucket <paramref name="bucket"/> from <paramref name="parameterData"/>
    /// (called with the parameter index) into <paramref name="bucketBuffer"/>. Extra elements are left as they are.
    /// </summary>
    public void Flatten(int bucket, Func<int, ReadOnlySpan<float>> parameterData, Span<float> bucketBuffer)
    {
        ArgumentNullException.ThrowIfNull(parameterData);
        var b = RequireBucket(bucket, bucketBuffer.Length, nameof(bucketBuffer));
        foreach (var entry in b.Entries)
        {
            var source = parameterData(entry.ParameterIndex);
            RequireParameterLength(entry, source.Length);
            source.CopyTo(bucketBuffer.Slice(entry.Offset, entry.Count));
        }
    }

    /// <summary>
    /// Copies every parameter of bucket <paramref name="bucket"/> out of <paramref name="bucketBuffer"/>
    /// into the span <paramref name="parameterData"/> returns for its index.
    /// </summary>
    public void Unflatten(int bucket, ReadOnlySpan<float> bucketBuffer, Func<int, Span<float>> parameterData)
    {
        ArgumentNullException.ThrowIfNull(parameterData);
        var b = RequireBucket(bucket, bucketBuffer.Length, nameof(bucketBuffer));
        foreach (var entry in b.Entries)
        {
            var destination = parameterData(entry.ParameterIndex);
            RequireParameterLength(entry, destination.Length);
            bucketBuffer.Slice(entry.Offset, entry.Count).CopyTo(destination);
        }
    }

    private static void ValidateParameters(IReadOnlyList<ParameterSpec> parameters)
    {
        var firstIndexOfName = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < parameters.Count; i++)
        {
            var spec = parameters[i]
                ?? throw new ArgumentException($"Parameter {i} is null.", nameof(parameters));
            if (string.IsNullOrWhiteSpace(spec.Name))
            {
                throw new ArgumentException($"Parameter {i} has no name.", nameof(parameters));
            }

            if (spec.ElementCount <= 0)
            {
                throw new ArgumentException(
                    $"Parameter '{spec.Name}' (index {i}) has {spec.ElementCount} elements; every parameter needs at least one.",
                    nameof(parameters));
            }

            if (!firstIndexOfName.TryAdd(spec.Name, i))
            {
                throw new ArgumentException(
                    $"Parameter name '{spec.Name}' is used by parameters {firstIndexOfName[spec.Name]} and {i}; names must be unique.",
                    nameof(parameters));
            }
        }
    }

    private void RequireParameterIndex(int parameterIndex)
    {
        if ((uint)parameterIndex >= (uint)Parameters.Count)
        {
            throw new ArgumentOutOfRangeException(
                nameof(parameterIndex), parameterIndex, $"Parameter index must be in 0..{Parameters.Count - 1}.");
        }
    }

    private Bucket RequireBucket(int bucket, int bufferLength, string bufferName)
    {
        if ((uint)bucket >= (uint)Buckets.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(bucket), bucket, $"Bucket index must be in 0..{Buckets.Count - 1}.");
        }

        var b = Buckets[bucket];
        if (bufferLength != b.Length)
        {
            throw new ArgumentException($"Bucket {bucket} has {b.Length} elements but the buffer has {bufferLength}.", bufferName);
        }

        return b;
    }

    private void RequireParameterLength(BucketEntry entry, int actual)
    {
        if (actual != entry.Count)
        {
            var name = Parameters[entry.ParameterIndex].Name;
            throw new ArgumentException(
                $"Parameter '{name}' (index {entry.ParameterIndex}) has {entry.Count} elements in the layout but its data has {actual}.");
        }
    }
}
