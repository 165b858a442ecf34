using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Tests.Nccl;

public class NcclUniqueIdTests
{
    [Fact]
    public void The_id_is_128_blittable_bytes_like_ncclUniqueId()
    {
        Assert.Equal(128, NcclUniqueId.ByteLength);
        Assert.Equal(128, Unsafe.SizeOf<NcclUniqueId>());
        Assert.Equal(128, Marshal.SizeOf<NcclUniqueId>());
        Assert.False(RuntimeHelpers.IsReferenceOrContainsReferences<NcclUniqueId>());
    }

    [Fact]
    public void Bytes_round_trip_and_equal_ids_compare_equal()
    {
        var bytes = Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 3)).ToArray();

        var id = NcclUniqueId.FromBytes(bytes);

        Assert.Equal(bytes, id.ToBytes());
        Assert.Equal(id, NcclUniqueId.FromBytes(bytes));
        Assert.Equal(id.GetHashCode(), NcclUniqueId.FromBytes(bytes).GetHashCode());
        bytes[127] ^= 1;
        Assert.NotEqual(id, NcclUniqueId.FromBytes(bytes));
    }

    [Fact]
    public void The_bytes_are_the_struct_memory_that_goes_to_nccl()
    {
        var bytes = Enumerable.Range(0, 128).Select(i => (byte)(255 - i)).ToArray();
        var id = NcclUniqueId.FromBytes(bytes);

        var memory = MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref id, 1));

        Assert.Equal(bytes, memory.ToArray());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(127)]
    [InlineData(129)]
    public void Ids_of_another_length_are_refused_naming_both_lengths(int length)
    {
        var error = Assert.Throws<ArgumentException>(() => NcclUniqueId.FromBytes(new byte[length]));

        Assert.Contains("128 bytes", error.Message);
        Assert.Contains($"got {length}", error.Message);
    }
}
