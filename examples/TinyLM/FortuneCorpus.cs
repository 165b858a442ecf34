using System.IO.Compression;
using System.Runtime.InteropServices;
using ActorTrain.TrainerActors.Jobs;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.Examples.TinyLM;

/// <summary>
/// The fortunes corpus (data/fortunes.txt.gz, see data/README.md) as bytes, split by epigram: every
/// <see cref="HeldOutEvery"/>-th epigram goes to the held-out text, all the others to the training
/// text, so both cover every fortune file. Epigrams end with a line holding one "%".
/// </summary>
public sealed class FortuneCorpus
{
    public const int HeldOutEvery = 20;

    private FortuneCorpus(byte[] training, byte[] heldOut, int epigrams)
    {
        Training = training;
        HeldOut = heldOut;
        Epigrams = epigrams;
    }

    public byte[] Training { get; }
    public byte[] HeldOut { get; }
    public int Epigrams { get; }

    public static FortuneCorpus Load(string gzipFile)
    {
        if (!File.Exists(gzipFile)) throw new FileNotFoundException($"the fortunes corpus is missing: {gzipFile} (see examples/TinyLM/data/README.md)", gzipFile);
        byte[] text;
        try
        {
            using var file = File.OpenRead(gzipFile);
            using var gzip = new GZipStream(file, CompressionMode.Decompress);
            using var bytes = new MemoryStream();
            gzip.CopyTo(bytes);
            text = bytes.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{gzipFile} is not a gzip file: {e.Message}", e);
        }
        return Split(text, gzipFile);
    }

    /// <summary>Splits <paramref name="text"/> into training and held-out epigrams (see the class).</summary>
    public static FortuneCorpus Split(ReadOnlySpan<byte> text, string source)
    {
        var training = new MemoryStream(text.Length);
        var heldOut = new MemoryStream(text.Length / HeldOutEvery + 1);
        var epigrams = 0;
        while (!text.IsEmpty)
        {
            var end = EndOfEpigram(text);
            (epigrams % HeldOutEvery == HeldOutEvery - 1 ? heldOut : training).Write(text[..end]);
            text = text[end..];
            epigrams++;
        }
        if (heldOut.Length == 0)
            throw new InvalidDataException($"{source} holds {epigrams} epigram(s): too few to hold every {HeldOutEvery}th out (epigrams end with a line holding one '%')");
        return new FortuneCorpus(training.ToArray(), heldOut.ToArray(), epigrams);
    }

    // The length of the first epigram with its closing "%\n" line (all that is left when there is none).
    private static int EndOfEpigram(ReadOnlySpan<byte> text)
    {
        for (var start = 0; start < text.Length;)
        {
            var newline = text[start..].IndexOf((byte)'\n');
            if (newline < 0) return text.Length;
            var line = text.Slice(start, newline);
            start += newline + 1;
            if (line.Length == 1 && line[0] == (byte)'%') return start;
        }
        return text.Length;
    }
}

/// <summary>
/// Windows of <c>context + 1</c> bytes from a text, <see cref="Count"/> of them spread evenly over it:
/// window <c>i</c> starts at <c>(i + shift) × stride</c>, where <c>stride</c> is the text's length
/// over the count and <c>shift</c> in [0, 1) moves with the epoch (when an <see cref="EpochClock"/> is
/// given), so that each epoch reads other bytes of the text. Input: the window's first
/// <c>context</c> bytes; target: the bytes one position later. (batch, context) int64 each.
/// </summary>
public sealed class TextWindows : IBatchSource
{
    private readonly byte[] _text;
    private readonly int _context;
    private readonly double _stride;
    private readonly EpochClock? _clock;

    public TextWindows(byte[] text, int context, int count, EpochClock? clock = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        if (text.Length < context + 1) throw new ArgumentException($"a text of {text.Length} bytes holds no window of {context + 1} bytes", nameof(text));
        _text = text;
        _context = context;
        _clock = clock;
        Count = count;
        _stride = (double)(text.Length - context - 1) / count;
    }

    /// <summary>Windows that do not overlap, over the whole text, at most <paramref name="limit"/> of them (then spread out), the same every time.</summary>
    public static TextWindows Tiling(byte[] text, int context, int limit) =>
        new(text, context, Math.Max(1, Math.Min(limit, (text.Length - 1) / context)));

    public int Count { get; }

    public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
    {
        // The fractional part of epoch × the golden ratio: shifts that never repeat and stay spread out.
        var shift = _clock is null ? 0.0 : _clock.Epoch * 0.6180339887498949 % 1.0;
        var input = empty([indices.Length, _context], ScalarType.Int64);
        var target = empty([indices.Length, _context], ScalarType.Int64);
        var inputs = MemoryMarshal.Cast<byte, long>(input.bytes);
        var targets = MemoryMarshal.Cast<byte, long>(target.bytes);
        for (var row = 0; row < indices.Length; row++)
        {
            if ((uint)indices[row] >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), indices[row], $"there are {Count} windows");
            var start = Math.Min((int)((indices[row] + shift) * _stride), _text.Length - _context - 1);
            var window = _text.AsSpan(start, _context + 1);
            for (var t = 0; t < _context; t++)
            {
                inputs[row * _context + t] = window[t];
                targets[row * _context + t] = window[t + 1];
            }
        }
        return device.type == DeviceType.CPU ? (input, target) : (input.to(device), target.to(device));
    }
}

/// <summary>
/// The epoch the trainers of this process are in, for <see cref="TextWindows"/>: a batch source is
/// not told the epoch, a callback is. One instance serves every trainer of the process. That is
/// safe because all replicas take each step together: no trainer draws a batch of epoch e + 1
/// before every trainer has drawn its last batch of epoch e, and each sets the epoch (the same
/// value) before its first batch of an epoch, also when a new generation resumes inside one.
/// </summary>
public sealed class EpochClock : TrainingCallback
{
    private int _epoch;

    public int Epoch => Volatile.Read(ref _epoch);

    public override void OnEpochBegin(TrainingContext context, optim.Optimizer optimizer) => Volatile.Write(ref _epoch, context.Epoch);
}
