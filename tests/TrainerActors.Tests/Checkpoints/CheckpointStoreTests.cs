using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using ActorTrain.Tests.Shared;
using ActorTrain.TrainerActors.Checkpoints;

namespace ActorTrain.TrainerActors.Tests.Checkpoints;

public sealed class CheckpointStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actortrain-ckpt-").FullName;

    public void Dispose()
    {
        if (Directory.Exists(_dir) && !OperatingSystem.IsWindows())
        {
            // A test may leave a directory without write permission behind.
            foreach (var d in Directory.EnumerateDirectories(_dir, "*", SearchOption.AllDirectories))
                File.SetUnixFileMode(d, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    internal static TrainingState State(long step, int sectionBytes = 1000) => new()
    {
        JobId = "mnist",
        ModelFingerprint = "0123456789abcdef",
        Epoch = 3,
        SamplesConsumedInEpoch = 4_352,
        GlobalStep = step,
        WorldSize = 4,
        Seed = 17,
        CreatedUtc = new DateTime(2025, 5, 1, 12, 30, 0, DateTimeKind.Utc),
        Sections = new Dictionary<string, byte[]>
        {
            [TrainingState.ModelSection] = Enumerable.Range(0, sectionBytes).Select(i => (byte)(i * 7 + step)).ToArray(),
            [TrainingState.OptimizerSection] = Enumerable.Range(0, sectionBytes / 2).Select(i => (byte)(i * 3)).ToArray(),
            [TrainingState.HistorySection] = Encoding.UTF8.GetBytes("{\"generations\":[1]}"),
            ["empty"] = [],
        },
    };

    /// <summary>A saved checkpoint with some of its bytes changed in place.</summary>
    private string SavedThenPatched(Action<byte[]> patch)
    {
        var path = new CheckpointStore(_dir, keep: 3).Save(State(7));
        var bytes = File.ReadAllBytes(path);
        patch(bytes);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void A_saved_checkpoint_reads_back_with_every_field_and_section()
    {
        var store = new CheckpointStore(_dir, keep: 3);
        var expected = State(42);
        var path = store.Save(expected);

        Assert.Equal(Path.Combine(_dir, "ckpt-000000042.atc"), path);
        var result = store.LoadNewestValid();
        Assert.True(result.Found);
        Assert.Equal(path, result.Path);
        Assert.Empty(result.Warnings);
        var actual = result.State!;
        Assert.Equal(expected.JobId, actual.JobId);
        Assert.Equal(expected.ModelFingerprint, actual.ModelFingerprint);
        Assert.Equal(expected.Epoch, actual.Epoch);
        Assert.Equal(expected.SamplesConsumedInEpoch, actual.SamplesConsumedInEpoch);
        Assert.Equal(expected.GlobalStep, actual.GlobalStep);
        Assert.Equal(expected.WorldSize, actual.WorldSize);
        Assert.Equal(expected.Seed, actual.Seed);
        Assert.Equal(expected.CreatedUtc, actual.CreatedUtc);
        Assert.Equal(DateTimeKind.Utc, actual.CreatedUtc.Kind);
        Assert.Equal(expected.Sections.Keys.Order(), actual.Sections.Keys.Order());
        foreach (var (name, bytes) in expected.Sections) Assert.Equal(bytes, actual.Section(name));
    }

    [Fact]
    public void The_same_state_always_gives_the_same_bytes()
    {
        using var a = new MemoryStream();
        using var b = new MemoryStream();
        CheckpointFormat.Write(a, State(5));
        CheckpointFormat.Write(b, State(5));
        Assert.Equal(a.ToArray(), b.ToArray());
    }

    [Fact]
    public void An_empty_or_missing_directory_holds_no_checkpoint()
    {
        var empty = new CheckpointStore(_dir, keep: 3).LoadNewestValid();
        Assert.False(empty.Found);
        Assert.Empty(empty.Warnings);
        var missing = new CheckpointStore(Path.Combine(_dir, "nowhere"), keep: 3).LoadNewestValid();
        Assert.False(missing.Found);
        Assert.Empty(CheckpointStore.List(Path.Combine(_dir, "nowhere")));
    }

    [Fact]
    public void A_corrupt_byte_in_the_newest_is_detected_and_the_previous_one_used_with_a_warning_naming_the_file()
    {
        var store = new CheckpointStore(_dir, keep: 3);
        store.Save(State(10));
        var newest = store.Save(State(20));
        var bytes = File.ReadAllBytes(newest);
        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(newest, bytes);

        var result = store.LoadNewestValid();

        Assert.Equal(10, result.State!.GlobalStep);
        var warning = Assert.Single(result.Warnings);
        Assert.Contains(newest, warning);
        Assert.Contains("SHA-256", warning);
        var e = Assert.Throws<InvalidCheckpointException>(() => CheckpointFormat.Read(newest));
        Assert.Equal(newest, e.Path);
        Assert.Contains(newest, e.Message);
    }

    [Fact]
    public void A_corrupt_header_is_reported_as_corruption()
    {
        var path = SavedThenPatched(bytes => bytes[CheckpointFormat.PrefixLength] = (byte)'#'); // the header's opening brace

        var e = Assert.Throws<InvalidCheckpointException>(() => CheckpointFormat.Read(path));
        Assert.Contains("corrupt", e.Reason);
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.02)]
    [InlineData(0.0)]
    public void A_truncated_newest_is_detected_and_the_previous_one_used(double keptFraction)
    {
        var store = new CheckpointStore(_dir, keep: 3);
        store.Save(State(10));
        var newest = store.Save(State(20, sectionBytes: 10_000));
        var length = new FileInfo(newest).Length;
        using (var f = new FileStream(newest, FileMode.Open)) f.SetLength((long)(length * keptFraction));

        var result = store.LoadNewestValid();

        Assert.Equal(10, result.State!.GlobalStep);
        var warning = Assert.Single(result.Warnings);
        Assert.Contains(newest, warning);
        Assert.Contains("truncated", warning);
    }

    [Fact]
    public void A_file_with_the_wrong_magic_is_not_a_checkpoint()
    {
        var path = Path.Combine(_dir, CheckpointStore.FileName(3));
        File.WriteAllBytes(path, Encoding.ASCII.GetBytes("PK\u0003\u0004 this is a zip file, not a checkpoint at all......"));

        var e = Assert.Throws<InvalidCheckpointException>(() => CheckpointFormat.Read(path));
        Assert.Contains("wrong magic", e.Reason);
        Assert.Contains(path, Assert.Single(new CheckpointStore(_dir, keep: 1).LoadNewestValid().Warnings));
    }

    [Fact]
    public void An_unknown_format_version_is_named()
    {
        var path = SavedThenPatched(bytes => BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 99));

        var e = Assert.Throws<InvalidCheckpointException>(() => CheckpointFormat.Read(path));
        Assert.Contains("format version 99", e.Reason);
    }

    [Fact]
    public void A_huge_header_length_is_refused_before_anything_is_allocated()
    {
        var path = SavedThenPatched(bytes => BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), 0xFFFF_FFF0));

        var e = Assert.Throws<InvalidCheckpointException>(() => CheckpointFormat.Read(path));
        Assert.Contains("header length 4294967280", e.Reason);
    }

    [Fact]
    public void A_huge_section_length_with_a_matching_hash_is_refused_before_anything_is_allocated()
    {
        // A well-formed file whose header declares 2 GB for a section the file does not hold.
        var header = Encoding.UTF8.GetBytes(
            """{"jobId":"j","modelFingerprint":"f","epoch":1,"samplesConsumedInEpoch":0,"globalStep":1,"worldSize":1,"seed":1,"createdUtc":"2025-01-01T00:00:00Z","sections":[{"name":"model","length":2000000000}]}""");
        var content = new byte[CheckpointFormat.PrefixLength + header.Length + 64];
        CheckpointFormat.Magic.CopyTo(content);
        BinaryPrimitives.WriteUInt32LittleEndian(content.AsSpan(8), CheckpointFormat.FormatVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(content.AsSpan(12), (uint)header.Length);
        header.CopyTo(content, CheckpointFormat.PrefixLength);
        var path = Path.Combine(_dir, CheckpointStore.FileName(1));
        File.WriteAllBytes(path, [.. content, .. SHA256.HashData(content)]);

        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidCheckpointException>(() => CheckpointFormat.Read(path));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Contains("section \"model\" declares 2000000000 bytes but only 64 remain", e.Reason);
        Assert.True(allocated < 16 << 20, $"reading allocated {allocated} bytes");
    }

    [Fact]
    public void Saving_prunes_to_the_newest_keep()
    {
        var store = new CheckpointStore(_dir, keep: 3);
        foreach (var step in new long[] { 1, 2, 3, 4, 5, 6 }) store.Save(State(step));

        Assert.Equal(new long[] { 6, 5, 4 }, CheckpointStore.List(_dir).Select(f => f.GlobalStep));
        Assert.Equal(3, Directory.GetFiles(_dir).Length);
    }

    [Fact]
    public void The_checkpoint_just_written_survives_pruning_even_behind_newer_ones()
    {
        var store = new CheckpointStore(_dir, keep: 1);
        store.Save(State(100));
        var written = store.Save(State(50));

        Assert.True(File.Exists(written));
        Assert.True(File.Exists(Path.Combine(_dir, CheckpointStore.FileName(100))));
    }

    [Fact]
    public void Checkpoints_are_listed_by_step_not_by_name()
    {
        var store = new CheckpointStore(_dir, keep: 5);
        store.Save(State(999_999_999));
        store.Save(State(1_000_000_000));
        store.Save(State(2));

        Assert.Equal(new long[] { 1_000_000_000, 999_999_999, 2 }, CheckpointStore.List(_dir).Select(f => f.GlobalStep));
        Assert.Equal(1_000_000_000, store.LoadNewestValid().State!.GlobalStep);
    }

    [Fact]
    public void A_leftover_temp_file_is_ignored_by_loading_and_removed_by_the_next_save()
    {
        var store = new CheckpointStore(_dir, keep: 3);
        var valid = store.Save(State(20));
        var leftover = Path.Combine(_dir, CheckpointStore.FileName(30) + ".0123abcd.tmp");
        File.WriteAllBytes(leftover, File.ReadAllBytes(valid)[..100]);

        var result = store.LoadNewestValid();
        Assert.Equal(valid, result.Path);
        Assert.Empty(result.Warnings);

        store.Save(State(40));
        Assert.False(File.Exists(leftover));
    }

    [Fact]
    public void A_checkpoint_renamed_to_another_step_is_not_trusted()
    {
        var store = new CheckpointStore(_dir, keep: 3);
        var original = store.Save(State(10));
        var renamed = Path.Combine(_dir, CheckpointStore.FileName(50));
        File.Copy(original, renamed);

        var result = store.LoadNewestValid();
        Assert.Equal(original, result.Path);
        Assert.Contains(renamed, Assert.Single(result.Warnings));
    }

    [UnwritableDirectoryFact]
    public void An_unwritable_directory_is_a_write_error_naming_the_path_and_leaves_no_temp_file()
    {
        var locked = Directory.CreateDirectory(Path.Combine(_dir, "locked")).FullName;
        // Root writes through Unix modes: as root the folder is made immutable instead, which root cannot write into either.
        using var immutable = RealFaults.IsRoot ? new ImmutableDirectory(locked) : null;
        if (!RealFaults.IsRoot) File.SetUnixFileMode(locked, UnixFileMode.UserRead | UnixFileMode.UserExecute);

        var e = Assert.Throws<CheckpointWriteException>(() => new CheckpointStore(locked, keep: 3).Save(State(5)));

        Assert.Contains(Path.Combine(locked, CheckpointStore.FileName(5)), e.Message);
        Assert.Contains("permission denied", e.Message);
        Assert.Empty(Directory.GetFiles(locked));
    }

    [RootFact]
    public void A_disk_that_fills_for_real_is_a_write_error_that_says_so_and_leaves_no_temp_file()
    {
        using var disk = new SmallTmpfs(64 * 1024);
        var store = new CheckpointStore(disk.Path, keep: 3);

        var e = Assert.Throws<CheckpointWriteException>(() => store.Save(State(2, sectionBytes: 256 * 1024)));

        Assert.Contains("disk is full", e.Message);
        Assert.Contains(Path.Combine(disk.Path, CheckpointStore.FileName(2)), e.Message);
        Assert.Empty(Directory.GetFiles(disk.Path));
    }

    [RootFact]
    public void A_read_only_file_system_is_a_write_error_naming_the_path()
    {
        using var disk = new SmallTmpfs(1024 * 1024, readOnly: true);

        var e = Assert.Throws<CheckpointWriteException>(() => new CheckpointStore(disk.Path, keep: 3).Save(State(3)));

        Assert.Contains(Path.Combine(disk.Path, CheckpointStore.FileName(3)), e.Message);
        Assert.Contains("read-only", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Empty(Directory.GetFiles(disk.Path));
    }

    [Fact]
    public void A_directory_that_cannot_be_created_is_a_write_error_naming_the_path()
    {
        var file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "");
        var dir = Path.Combine(file, "checkpoints");

        var e = Assert.Throws<CheckpointWriteException>(() => new CheckpointStore(dir, keep: 3).Save(State(5)));

        Assert.Equal(Path.Combine(dir, CheckpointStore.FileName(5)), e.Path);
        Assert.Contains(e.Path, e.Message);
    }

    [Fact]
    public void A_full_disk_is_a_write_error_that_says_so_and_leaves_no_temp_file()
    {
        var store = new CheckpointStore(_dir, keep: 3) { OpenTemp = path => new DiskFillingStream(File.Create(path), capacity: 4096) };

        var e = Assert.Throws<CheckpointWriteException>(() => store.Save(State(2, sectionBytes: 10_000)));

        Assert.Contains("disk is full", e.Message);
        Assert.Contains(Path.Combine(_dir, CheckpointStore.FileName(2)), e.Message);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    /// <summary>Fails the way a full disk does on this platform once <c>capacity</c> bytes are written.</summary>
    private sealed class DiskFillingStream(FileStream inner, long capacity) : Stream
    {
        private long _written;

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > capacity)
                throw new IOException("No space left on device", OperatingSystem.IsWindows() ? unchecked((int)0x80070070) : 28);
            inner.Write(buffer);
            _written += buffer.Length;
        }

        public override void Flush() => inner.Flush();
        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _written;
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>
/// Runs where a folder can be made unwritable for this process: by its Unix mode for a normal user, by
/// <c>chattr +i</c> for root (root ignores the mode). Skipped, with the reason, elsewhere.
/// </summary>
public sealed class UnwritableDirectoryFactAttribute : FactAttribute
{
    public UnwritableDirectoryFactAttribute()
    {
        if (OperatingSystem.IsWindows()) Skip = "Windows has no Unix file modes";
        else if (RealFaults.IsRoot && !RealFaults.CanMakeImmutable)
            Skip = "root writes through Unix modes, and chattr +i does not work on the file system of the temporary folder";
    }
}
