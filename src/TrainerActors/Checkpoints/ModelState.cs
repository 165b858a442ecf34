using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>
/// A module's parameters and buffers as bytes, for the checkpoint's "model" section. Entries are
/// sorted by name; each holds its name, kind, dtype, shape and raw little-endian bytes, so a
/// loaded model is bitwise equal to the saved one.
/// </summary>
internal static class ModelState
{
    private const uint Magic = 0x4D545441; // "ATTM"
    private const int MaxDims = 64;
    private const int MaxNameBytes = 4096;

    private enum Kind : byte { Parameter = 0, Buffer = 1 }

    private sealed record Entry(string Name, Kind Kind, Tensor Tensor);

    private sealed record SavedEntry(string Name, Kind Kind, ScalarType Dtype, long[] Shape, int Offset, int Length);

    public static byte[] Save(nn.Module module)
    {
        using var scope = torch.NewDisposeScope();
        using var output = new MemoryStream();
        using var writer = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        var entries = Entries(module);
        writer.Write(Magic);
        writer.Write(entries.Count);
        foreach (var e in entries)
        {
            var source = e.Tensor.device_type == DeviceType.CPU ? e.Tensor.detach().contiguous() : e.Tensor.detach().cpu().contiguous();
            writer.Write(e.Name);
            writer.Write((byte)e.Kind);
            writer.Write((int)source.dtype);
            writer.Write(source.shape.Length);
            foreach (var d in source.shape) writer.Write(d);
            var bytes = source.bytes;
            writer.Write(bytes.Length);
            writer.Write(bytes);
        }
        writer.Flush();
        return output.ToArray();
    }

    /// <summary>
    /// Copies saved parameters and buffers into <paramref name="module"/>. Everything is checked
    /// before anything is copied: names, kinds, dtypes and shapes must all match, or
    /// <see cref="InvalidDataException"/> says which do not.
    /// </summary>
    public static void Load(nn.Module module, byte[] bytes)
    {
        using var scope = torch.NewDisposeScope();
        var targets = Entries(module).ToDictionary(e => e.Name, StringComparer.Ordinal);
        var saved = Parse(bytes);

        var missing = targets.Keys.Except(saved.Select(s => s.Name), StringComparer.Ordinal).ToList();
        var unexpected = saved.Select(s => s.Name).Except(targets.Keys, StringComparer.Ordinal).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new InvalidDataException("model state does not fit the model: " + string.Join("; ",
                new[] { Names("missing from the checkpoint", missing), Names("not in the model", unexpected) }.Where(s => s.Length > 0)));

        foreach (var s in saved)
        {
            var target = targets[s.Name].Tensor;
            if (targets[s.Name].Kind != s.Kind)
                throw new InvalidDataException($"model state: \"{s.Name}\" is a {Lower(s.Kind)} in the checkpoint but a {Lower(targets[s.Name].Kind)} in the model");
            if (target.dtype != s.Dtype)
                throw new InvalidDataException($"model state: \"{s.Name}\" is {s.Dtype} in the checkpoint but {target.dtype} in the model");
            if (!target.shape.SequenceEqual(s.Shape))
                throw new InvalidDataException($"model state: \"{s.Name}\" has shape [{string.Join(", ", s.Shape)}] in the checkpoint but [{string.Join(", ", target.shape)}] in the model");
        }

        using var noGrad = torch.no_grad();
        foreach (var s in saved)
        {
            var target = targets[s.Name].Tensor;
            var source = bytes.AsSpan(s.Offset, s.Length);
            if (target.device_type == DeviceType.CPU && target.is_contiguous())
            {
                source.CopyTo(target.bytes);
                continue;
            }
            var staged = torch.empty(s.Shape, s.Dtype);
            source.CopyTo(staged.bytes);
            target.copy_(staged);
        }
    }

    private static List<Entry> Entries(nn.Module module) =>
        module.named_parameters().Select(p => new Entry(p.name, Kind.Parameter, p.parameter))
            .Concat(module.named_buffers(true, true).Select(b => new Entry(b.name, Kind.Buffer, b.buffer)))
            .OrderBy(e => e.Name, StringComparer.Ordinal)
            .ToList();

    /// <summary>Reads the entry table without copying tensor bytes; every length is checked against what remains.</summary>
    private static List<SavedEntry> Parse(byte[] bytes)
    {
        var span = new SpanReader(bytes);
        if (span.UInt32() != Magic) throw new InvalidDataException("model state: not a model state section (wrong magic)");
        var count = span.Int32();
        if (count < 0 || count > bytes.Length) throw new InvalidDataException($"model state: implausible entry count {count}");
        var entries = new List<SavedEntry>(count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var name = span.String(MaxNameBytes);
            if (!names.Add(name)) throw new InvalidDataException($"model state: \"{name}\" appears twice");
            var kind = span.Byte();
            if (kind > (byte)Kind.Buffer) throw new InvalidDataException($"model state: \"{name}\" has unknown kind {kind}");
            var dtype = (ScalarType)span.Int32();
            var dims = span.Int32();
            if (dims < 0 || dims > MaxDims) throw new InvalidDataException($"model state: \"{name}\" has {dims} dimensions");
            var shape = new long[dims];
            long elements = 1;
            for (var d = 0; d < dims; d++)
            {
                shape[d] = span.Int64();
                if (shape[d] < 0) throw new InvalidDataException($"model state: \"{name}\" has a negative dimension");
                elements = shape[d] == 0 ? 0 : elements > bytes.Length / shape[d] ? bytes.Length + 1L : elements * shape[d];
            }
            var length = span.Int32();
            long expected;
            try { expected = elements * ElementSize(dtype); }
            catch (ArgumentException) { throw new InvalidDataException($"model state: \"{name}\" has unsupported dtype {(int)dtype}"); }
            if (length != expected) throw new InvalidDataException($"model state: \"{name}\" holds {length} bytes but its dtype and shape need {expected}");
            entries.Add(new SavedEntry(name, (Kind)kind, dtype, shape, span.Skip(length, name), length));
        }
        if (!span.AtEnd) throw new InvalidDataException("model state: unexpected bytes after the last entry");
        return entries;
    }

    private static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        ScalarType.Int64 or ScalarType.Float64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        _ => throw new ArgumentException($"unsupported dtype {dtype}"),
    };

    private static string Names(string what, List<string> names) =>
        names.Count == 0 ? "" : $"{what}: {string.Join(", ", names.Take(5))}{(names.Count > 5 ? $" and {names.Count - 5} more" : "")}";

    private static string Lower(Kind kind) => kind.ToString().ToLowerInvariant();

    /// <summary>Bounds-checked little-endian reads over a section; running out is an <see cref="InvalidDataException"/>.</summary>
    private ref struct SpanReader(ReadOnlySpan<byte> bytes)
    {
        private readonly ReadOnlySpan<byte> _bytes = bytes;
        private int _position;

        public readonly bool AtEnd => _position == _bytes.Length;

        private ReadOnlySpan<byte> Take(int count)
        {
            if (count < 0 || count > _bytes.Length - _position)
                throw new InvalidDataException($"model state: truncated at byte {_position} (needs {count} more, {_bytes.Length - _position} left)");
            var slice = _bytes.Slice(_position, count);
            _position += count;
            return slice;
        }

        public byte Byte() => Take(1)[0];
        public uint UInt32() => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
        public int Int32() => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(Take(4));
        public long Int64() => System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(Take(8));

        /// <summary>A string as <see cref="BinaryWriter.Write(string)"/> writes it: 7-bit encoded length, then UTF-8.</summary>
        public string String(int maxBytes)
        {
            int length = 0, shift = 0;
            byte b;
            do
            {
                if (shift > 28) throw new InvalidDataException("model state: bad string length");
                b = Byte();
                length |= (b & 0x7F) << shift;
                shift += 7;
            } while ((b & 0x80) != 0);
            if (length > maxBytes) throw new InvalidDataException($"model state: a name of {length} bytes");
            return Encoding.UTF8.GetString(Take(length));
        }

        public int Skip(int count, string name)
        {
            if (count > _bytes.Length - _position)
                throw new InvalidDataException($"model state: \"{name}\" declares {count} bytes but only {_bytes.Length - _position} remain");
            var start = _position;
            _position += count;
            return start;
        }
    }
}
