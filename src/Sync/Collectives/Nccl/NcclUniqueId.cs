using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Collectives.Nccl;

/// <summary>
/// <c>ncclUniqueId</c>: 128 opaque bytes from <c>ncclGetUniqueId</c> that every rank of a
/// communicator passes to <c>ncclCommInitRank</c>. Blittable, passed by value as nccl.h does;
/// <see cref="ToBytes"/> and <see cref="FromBytes"/> let it travel in a message.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = ByteLength)]
internal unsafe struct NcclUniqueId : IEquatable<NcclUniqueId>
{
    /// <summary><c>NCCL_UNIQUE_ID_BYTES</c>.</summary>
    public const int ByteLength = 128;

    private fixed byte _internal[ByteLength];

    /// <summary>A copy of the id's bytes.</summary>
    public readonly byte[] ToBytes()
    {
        var bytes = new byte[ByteLength];
        fixed (byte* source = _internal)
        {
            new ReadOnlySpan<byte>(source, ByteLength).CopyTo(bytes);
        }

        return bytes;
    }

    /// <summary>The id whose bytes are <paramref name="bytes"/>, which must be exactly <see cref="ByteLength"/> long.</summary>
    public static NcclUniqueId FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != ByteLength)
        {
            throw new ArgumentException(
                $"An NCCL unique id is {ByteLength} bytes; got {bytes.Length}.", nameof(bytes));
        }

        var id = default(NcclUniqueId);
        bytes.CopyTo(new Span<byte>(id._internal, ByteLength));
        return id;
    }

    /// <inheritdoc />
    public readonly bool Equals(NcclUniqueId other)
    {
        fixed (byte* mine = _internal)
        {
            return new ReadOnlySpan<byte>(mine, ByteLength).SequenceEqual(new ReadOnlySpan<byte>(other._internal, ByteLength));
        }
    }

    /// <inheritdoc />
    public override readonly bool Equals(object? obj) => obj is NcclUniqueId other && Equals(other);

    /// <inheritdoc />
    public override readonly int GetHashCode()
    {
        var hash = new HashCode();
        fixed (byte* mine = _internal)
        {
            hash.AddBytes(new ReadOnlySpan<byte>(mine, ByteLength));
        }

        return hash.ToHashCode();
    }

    public static bool operator ==(NcclUniqueId left, NcclUniqueId right) => left.Equals(right);

    public static bool operator !=(NcclUniqueId left, NcclUniqueId right) => !left.Equals(right);
}
