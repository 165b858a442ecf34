using ActorTrain.Sync.Transport;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace ActorTrain.Cluster.Tests.Serialization;

public class GradientChunkSerializerSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    private const int Header = GradientChunkSerializer.HeaderSize;

    private GradientChunkSerializer Serializer => (GradientChunkSerializer)fixture.System.Serialization.FindSerializerForType(typeof(GradientChunk));

    /// <summary>Floats by their bits: quiet and signalling NaNs with payloads, both zeros, infinities, a subnormal.</summary>
    private static readonly uint[] AwkwardBits =
    [
        0x7fc00000, 0x7fc00001, 0xffbadbad, 0x7f800001, 0xff800123, 0x80000000, 0x00000000,
        0x7f800000, 0xff800000, 0x00000001, 0x3fc00000, 0xc0100000, 0x7f7fffff,
    ];

    private static float[] FloatsOfBits(params uint[] bits) => MemoryMarshal.Cast<uint, float>(bits.AsSpan()).ToArray();

    private static GradientChunk Sample(float[]? data = null) =>
        new(Generation: 7, Step: -2, Bucket: 3, Lane: 1, RingStep: 5, Chunk: 4, FromPeer: 2, data ?? FloatsOfBits(AwkwardBits));

    /// <summary>Through the ActorSystem, as remoting does it: the HOCON binding picks the serializer, its id finds it again.</summary>
    private GradientChunk RoundTrip(GradientChunk chunk)
    {
        var serializer = fixture.System.Serialization.FindSerializerFor(chunk);
        Assert.IsType<GradientChunkSerializer>(serializer);
        var bytes = serializer.ToBinary(chunk);
        return Assert.IsType<GradientChunk>(fixture.System.Serialization.Deserialize(bytes, serializer.Identifier, ""));
    }

    private static void AssertSameChunk(GradientChunk expected, GradientChunk actual)
    {
        Assert.Equal(
            (expected.Generation, expected.Step, expected.Bucket, expected.Lane, expected.RingStep, expected.Chunk, expected.FromPeer),
            (actual.Generation, actual.Step, actual.Bucket, actual.Lane, actual.RingStep, actual.Chunk, actual.FromPeer));
        Assert.Equal(
            Convert.ToHexString(MemoryMarshal.AsBytes(expected.Data.Span)),
            Convert.ToHexString(MemoryMarshal.AsBytes(actual.Data.Span)));
    }

    /// <summary>A serialized sample with one header field overwritten.</summary>
    private byte[] WithInt32At(int offset, int value)
    {
        var bytes = Serializer.ToBinary(Sample());
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(offset), value);
        return bytes;
    }

    private string Refusal(byte[] bytes) =>
        Assert.Throws<SerializationException>(() => Serializer.FromBinary(bytes, null!)).Message;

    [Fact]
    public void A_refusal_must_be_published_on_the_event_stream_naming_the_problem()
    {
        var probe = new Akka.TestKit.TestProbe(fixture.System, new Akka.TestKit.Xunit2.XunitAssertions());
        fixture.System.EventStream.Subscribe(probe.Ref, typeof(GradientChunkSerializer.Refused));
        try
        {
            var message = Refusal(WithInt32At(24, -1));
            var refused = probe.FishForMessage<GradientChunkSerializer.Refused>(r => r.Problem == message, TestConfig.Timeout);
            Assert.Contains("negative lane", refused.Problem);
        }
        finally
        {
            fixture.System.EventStream.Unsubscribe(probe.Ref);
        }
    }

    [Fact]
    public void Serializer_must_round_trip_every_id_and_every_float_bit_for_bit()
    {
        var chunk = Sample();

        AssertSameChunk(chunk, RoundTrip(chunk));
    }

    [Fact]
    public void Serializer_must_round_trip_extreme_ids_an_empty_chunk_and_a_full_one()
    {
        var extremes = new GradientChunk(long.MaxValue, long.MinValue, int.MaxValue, int.MaxValue, int.MaxValue, int.MaxValue, int.MaxValue, FloatsOfBits(0x7fc0beef));
        var empty = new GradientChunk(0, 0, 0, 0, 0, 0, 0, ReadOnlyMemory<float>.Empty);
        var full = Sample(Enumerable.Range(0, 16 * 1024).Select(i => i * 0.25f - 100).ToArray());

        AssertSameChunk(extremes, RoundTrip(extremes));
        AssertSameChunk(empty, RoundTrip(empty));
        Assert.Equal(0, RoundTrip(empty).Data.Length);
        AssertSameChunk(full, RoundTrip(full));
    }

    [Fact]
    public void Serializer_must_write_only_the_slice_a_chunk_holds()
    {
        var buffer = Enumerable.Range(0, 100).Select(i => (float)i).ToArray();
        var chunk = Sample(null) with { Data = buffer.AsMemory(10, 5) };

        var decoded = RoundTrip(chunk);

        Assert.Equal([10f, 11f, 12f, 13f, 14f], decoded.Data.ToArray());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(16 * 1024)]
    public void Serialized_size_must_be_the_header_and_four_bytes_per_float(int floats)
    {
        var bytes = Serializer.ToBinary(Sample(new float[floats]));

        Assert.Equal(44, Header);
        Assert.Equal(Header + 4 * floats, bytes.Length);
        Assert.Equal(bytes.Length, GradientChunkSerializer.SerializedSize(floats));
    }

    [Fact]
    public void Wire_layout_must_be_the_documented_little_endian_header_then_the_raw_floats()
    {
        var floats = FloatsOfBits(0x3f800000, 0x7fc00001);
        var bytes = Serializer.ToBinary(new GradientChunk(0x0102030405060708, -2, 9, 10, 11, 12, 13, floats));

        Assert.Equal(
            "4743" + "0100" + "0807060504030201" + "FEFFFFFFFFFFFFFF" + "09000000" + "0A000000" + "0B000000" + "0C000000" + "0D000000" + "02000000"
            + "0000803F" + "0100C07F",
            Convert.ToHexString(bytes));
    }

    [Fact]
    public void Writing_must_allocate_one_array_of_the_serialized_size_and_reading_no_array_at_all()
    {
        var chunk = Sample(new float[16 * 1024]);
        var serializer = Serializer;
        var bytes = serializer.ToBinary(chunk);
        serializer.FromBinary(bytes, null!);

        var before = GC.GetAllocatedBytesForCurrentThread();
        bytes = serializer.ToBinary(chunk);
        var written = GC.GetAllocatedBytesForCurrentThread() - before;
        before = GC.GetAllocatedBytesForCurrentThread();
        var decoded = (GradientChunk)serializer.FromBinary(bytes, null!);
        var read = GC.GetAllocatedBytesForCurrentThread() - before;

        // An array's own header is a few dozen bytes; a second copy of the payload would be 64 KiB more.
        Assert.InRange(written, bytes.Length, bytes.Length + 256);
        // The message and a view of the floats: a few small objects, no copy of the 64 KiB payload.
        Assert.Equal(16 * 1024, decoded.Data.Length);
        Assert.InRange(read, 1, 512);
    }

    [Fact]
    public unsafe void A_received_chunk_must_read_its_floats_where_they_arrived()
    {
        var serializer = Serializer;
        var bytes = serializer.ToBinary(Sample([1f, 2f, 3f]));

        var decoded = (GradientChunk)serializer.FromBinary(bytes, null!);
        // The floats are the received array's bytes after the header, not a copy of them.
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(Header + 4), 20f);

        Assert.Equal([1f, 20f, 3f], decoded.Data.ToArray());
        Assert.Equal([20f, 3f], decoded.Data[1..].ToArray());
        using var pinned = decoded.Data[2..].Pin();
        Assert.Equal(3f, *(float*)pinned.Pointer);
        // Sent on again (a chunk forwarded as it came), it is written as the bytes it arrived in.
        Assert.Same(bytes, serializer.ToBinary(decoded));
    }

    [Fact]
    public void A_prepared_chunk_must_hold_a_copy_and_serialize_to_its_own_bytes_without_allocating()
    {
        var source = FloatsOfBits(AwkwardBits);
        var plain = Sample(source.ToArray());
        var prepared = GradientChunkSerializer.Prepare(new ChunkKey(7, -2, 3, 1, 5, 4), 2, source);
        source.AsSpan().Fill(0);
        var serializer = Serializer;

        var before = GC.GetAllocatedBytesForCurrentThread();
        var bytes = serializer.ToBinary(prepared);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Same(bytes, serializer.ToBinary(prepared));
        Assert.Equal(serializer.ToBinary(plain), bytes);
        AssertSameChunk(plain, prepared);
        AssertSameChunk(plain, RoundTrip(prepared));
    }

    [Fact]
    public void A_copy_of_a_prepared_chunk_with_other_ids_or_part_of_its_data_must_serialize_what_it_holds()
    {
        var prepared = GradientChunkSerializer.Prepare(new ChunkKey(7, -2, 3, 1, 5, 4), 2, FloatsOfBits(AwkwardBits));
        var otherLane = prepared with { Lane = 9 };
        var tail = prepared with { Data = prepared.Data[2..] };

        Assert.Equal(9, RoundTrip(otherLane).Lane);
        AssertSameChunk(otherLane, RoundTrip(otherLane));
        AssertSameChunk(tail, RoundTrip(tail));
        Assert.Equal(AwkwardBits.Length - 2, RoundTrip(tail).Data.Length);
    }

    [Fact]
    public unsafe void Pinning_a_prepared_chunk_must_point_at_its_floats()
    {
        var prepared = GradientChunkSerializer.Prepare(new ChunkKey(1, 1, 0, 0, 0, 0), 0, [1f, 2f, 3f]);

        using var whole = prepared.Data.Pin();
        using var fromSecond = prepared.Data[1..].Pin();

        Assert.Equal(1f, *(float*)whole.Pointer);
        Assert.Equal(2f, *(float*)fromSecond.Pointer);
    }

    [Fact]
    public void Serializer_must_be_bound_to_gradient_chunks_only_under_its_own_identifier()
    {
        Assert.Equal(3142, Serializer.Identifier);
        Assert.False(Serializer.IncludeManifest);
        Assert.IsType<ActorTrainMessageSerializer>(fixture.System.Serialization.FindSerializerForType(typeof(NodeReady)));
        Assert.Throws<ArgumentException>(() => Serializer.ToBinary(new NodeReady(1, "n")));
    }

    [Fact]
    public void Bytes_shorter_than_the_header_are_refused()
    {
        var bytes = Serializer.ToBinary(Sample());

        for (var length = 0; length < Header; length++)
            Assert.Contains("shorter than the 44-byte header", Refusal(bytes[..length]));
    }

    [Fact]
    public void A_wrong_magic_is_refused()
    {
        var bytes = Serializer.ToBinary(Sample());
        bytes[0] ^= 0xff;

        Assert.Contains("bad magic", Refusal(bytes));
    }

    [Fact]
    public void Another_format_version_is_refused()
    {
        var bytes = Serializer.ToBinary(Sample());
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), GradientChunkSerializer.FormatVersion + 1);

        Assert.Contains("format version 2", Refusal(bytes));
    }

    [Theory]
    [InlineData(4, "generation")]
    [InlineData(20, "bucket")]
    [InlineData(24, "lane")]
    [InlineData(28, "ring step")]
    [InlineData(32, "chunk index")]
    [InlineData(36, "sending peer")]
    public void A_negative_id_is_refused_naming_it(int offset, string id)
    {
        var bytes = Serializer.ToBinary(Sample());
        // The generation is a 64-bit field: writing -1 into its high half makes it negative.
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(offset == 4 ? 8 : offset), -1);

        Assert.Contains($"negative {id}", Refusal(bytes));
    }

    [Fact]
    public void A_negative_step_is_a_broadcast_and_accepted()
    {
        var chunk = Sample() with { Step = -1 };

        Assert.Equal(-1, RoundTrip(chunk).Step);
    }

    [Fact]
    public void A_negative_element_count_is_refused()
    {
        Assert.Contains("negative element count -4", Refusal(WithInt32At(40, -4)));
    }

    [Fact]
    public void Every_truncation_of_the_floats_is_refused()
    {
        var bytes = Serializer.ToBinary(Sample());

        for (var length = Header; length < bytes.Length; length++)
            Assert.Contains("but " + (length - Header) + " bytes follow", Refusal(bytes[..length]));
    }

    [Fact]
    public void Bytes_after_the_declared_floats_are_refused()
    {
        var bytes = Serializer.ToBinary(Sample());

        Assert.Contains($"declares {AwkwardBits.Length} floats", Refusal([.. bytes, 0, 0, 0, 0]));
        Assert.Contains($"declares {AwkwardBits.Length} floats", Refusal([.. bytes, 0]));
    }

    [Fact]
    public void A_payload_that_is_not_whole_floats_is_refused()
    {
        var bytes = Serializer.ToBinary(Sample(new float[2]));
        bytes = [.. bytes[..^1]];
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(40), 1);

        Assert.Contains("declares 1 floats (4 bytes) but 7 bytes follow", Refusal(bytes));
    }

    [Fact]
    public void An_element_count_that_promises_gigabytes_is_refused_without_allocating_them()
    {
        var bytes = WithInt32At(40, int.MaxValue);
        var before = GC.GetAllocatedBytesForCurrentThread();

        var message = Refusal(bytes);

        Assert.Contains($"declares {int.MaxValue} floats", message);
        Assert.Contains(nameof(GradientChunk), message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the promised length was not allocated");
    }

    [Fact]
    public void Random_garbage_is_refused()
    {
        var random = new Random(20240611);
        var serializer = Serializer;

        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 120)];
            random.NextBytes(bytes);
            // Half start with the right magic and version, so the checks behind them are reached too.
            if (i % 2 == 0 && bytes.Length >= 4) BinaryPrimitives.WriteUInt32LittleEndian(bytes, 0x0001_4743);
            var e = Record.Exception(() => serializer.FromBinary(bytes, null!));
            Assert.True(e is SerializationException, $"garbage #{i} ({Convert.ToHexString(bytes)}): {e?.GetType().Name ?? "decoded without error"}");
        }
    }

    [Fact]
    public void A_messagepack_chunk_of_the_previous_protocol_is_refused()
    {
        // Version 2 sent chunks as a MessagePack array of eight fields (0x98 ...).
        var old = MessagePackBytes.Pack((ref MessagePack.MessagePackWriter w) =>
        {
            w.WriteArrayHeader(8);
            for (var i = 0; i < 7; i++) w.Write(1);
            w.Write(new byte[64]);
        });

        Assert.Contains("bad magic", Refusal(old));
    }
}
