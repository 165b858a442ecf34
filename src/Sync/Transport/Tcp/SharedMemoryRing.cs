using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// A one-way byte stream between two processes on one host: a ring buffer in a file under
/// <c>/dev/shm</c> that one process writes and the other reads, for a data-plane hop whose ends
/// share a host. The writer creates the file and names it in its handshake; the reader maps it
/// and proves it found the same file by the nonce inside it. Once the handshake is over the
/// writer unlinks the file, so nothing is left behind when either process ends.
/// <para>
/// This class only moves bytes and keeps the counters; <see cref="SharedMemoryConnection"/> adds
/// the wake-ups. The layout (little-endian, counters on cache lines of their own):
/// <code>
///   0 u64 magic "ATSHMRG1" | 8 u64 capacity | 16 byte[16] nonce
///  64 i64 head: bytes written (only the writer stores it)
/// 128 i64 tail: bytes read (only the reader stores it)
/// 192 i32 reader waiting | 256 i32 writer waiting
/// 4096 byte[capacity] data; byte n of the stream sits at 4096 + n mod capacity
/// </code>
/// </para>
/// </summary>
internal sealed unsafe partial class SharedMemoryRing : IDisposable
{
    /// <summary>Where the rings' files live: the host's shared-memory file system.</summary>
    public const string Directory = "/dev/shm";

    /// <summary>Smallest ring a reader accepts.</summary>
    public const long MinCapacity = 64 * 1024;

    /// <summary>Largest ring a reader accepts (and a writer creates).</summary>
    public const long MaxCapacity = 1L << 30;

    public const int NonceSize = 16;

    private const ulong Magic = 0x3147524D48535441; // "ATSHMRG1"
    private const int HeadOffset = 64;
    private const int TailOffset = 128;
    private const int ReaderWaitingOffset = 192;
    private const int WriterWaitingOffset = 256;
    private const int DataOffset = 4096;
    private const string Prefix = "actortrain-ring-";

    private readonly MemoryMappedFile file;
    private readonly MemoryMappedViewAccessor view;
    private readonly long mask;
    private string? path;

    private SharedMemoryRing(MemoryMappedFile file, MemoryMappedViewAccessor view, string name, string? path, long capacity, byte[] nonce)
    {
        this.file = file;
        this.view = view;
        Name = name;
        this.path = path;
        Capacity = capacity;
        mask = capacity - 1;
        Nonce = nonce;
    }

    /// <summary>The file's name in <see cref="Directory"/>, as the handshake carries it.</summary>
    public string Name { get; }

    /// <summary>Bytes the ring holds.</summary>
    public long Capacity { get; }

    /// <summary>Random bytes the writer put in the file; the reader must find the ones its handshake named.</summary>
    public byte[] Nonce { get; }

    /// <summary>Whether the handshake may name this file: <see cref="Prefix"/>, the writer's process id, 32 hex digits.</summary>
    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    /// <summary>The smallest power-of-two capacity, at least 4 MiB, that holds two frames of <paramref name="frameBytes"/>; null beyond <see cref="MaxCapacity"/>.</summary>
    public static long? CapacityFor(long frameBytes)
    {
        long capacity = 4L << 20;
        while (capacity < 2 * frameBytes)
        {
            capacity <<= 1;
            if (capacity > MaxCapacity)
            {
                return null;
            }
        }

        return capacity;
    }

    /// <summary>
    /// Creates a ring of <paramref name="capacity"/> bytes (a power of two) as the writer. The file is made
    /// readable and writable by this user only, and its memory is reserved up front, so that a full
    /// <c>/dev/shm</c> fails here, as an <see cref="IOException"/>, and not later as a fault on a page.
    /// <paramref name="directory"/> is for tests: a reader only ever opens rings in <see cref="Directory"/>.
    /// </summary>
    public static SharedMemoryRing Create(long capacity, string directory = Directory)
    {
        if (capacity < MinCapacity || capacity > MaxCapacity || (capacity & (capacity - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"A ring's capacity is a power of two in {MinCapacity}..{MaxCapacity}.");
        }

        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException($"Shared-memory rings live in Linux's {Directory}.");
        }

        RemoveOrphans();
        var name = $"{Prefix}{Environment.ProcessId}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16))}";
        var path = Path.Combine(directory, name);
        var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.ReadWrite,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            PreallocationSize = DataOffset + capacity,
        });
        MemoryMappedFile? file = null;
        try
        {
            stream.SetLength(DataOffset + capacity);
            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            var view = file.CreateViewAccessor(0, DataOffset + capacity, MemoryMappedFileAccess.ReadWrite);
            var nonce = RandomNumberGenerator.GetBytes(NonceSize);
            var ring = new SharedMemoryRing(file, view, name, path, capacity, nonce);
            ring.WriteHeader();
            return ring;
        }
        catch
        {
            if (file is null)
            {
                stream.Dispose();
            }

            file?.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>
    /// Maps the ring named <paramref name="name"/> as the reader. Returns null, with the reason, when the name is
    /// not a ring's, the file is not there (another host, or another <c>/dev/shm</c>), or it is not the ring the
    /// handshake described: another nonce, a bad header, a size that does not match, or data already in it.
    /// </summary>
    public static SharedMemoryRing? TryOpen(string name, ReadOnlySpan<byte> nonce, out string? problem)
    {
        if (!IsValidName(name))
        {
            problem = "not a ring's file name";
            return null;
        }

        var path = Path.Combine(Directory, name);
        FileStream stream;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.LinkTarget is not null)
            {
                problem = $"no such file in {Directory} (the peer's {Directory} is not this one)";
                return null;
            }

            stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"cannot open {path}: {e.Message}";
            return null;
        }

        MemoryMappedFile? file = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            long length = stream.Length;
            if (length < DataOffset + MinCapacity || length > DataOffset + MaxCapacity)
            {
                problem = $"{path} has {length} bytes, not a ring's size";
                return null;
            }

            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            long capacity = length - DataOffset;
            var found = new byte[NonceSize];
            view.ReadArray(16, found, 0, NonceSize);
            problem = view.ReadUInt64(0) != Magic ? "bad magic"
                : view.ReadInt64(8) != capacity || (capacity & (capacity - 1)) != 0 ? $"capacity {view.ReadInt64(8)} does not fit the file's {length} bytes"
                : !CryptographicOperations.FixedTimeEquals(found, nonce) ? "another nonce than the handshake's"
                : view.ReadInt64(HeadOffset) != 0 || view.ReadInt64(TailOffset) != 0 ? "it is already in use"
                : null;
            if (problem is not null)
            {
                problem = $"{path}: {problem}";
                return null;
            }

            var ring = new SharedMemoryRing(file, view, name, path: null, capacity, found);
            (file, view) = (null, null);
            return ring;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"cannot map {path}: {e.Message}";
            return null;
        }
        finally
        {
            view?.Dispose();
            if (file is null)
            {
                stream.Dispose();
            }
            else
            {
                file.Dispose();
            }
        }
    }

    /// <summary>
    /// Copies as much of <paramref name="source"/> as there is room for and publishes it. Returns the bytes
    /// written (0: the ring is full), and whether the reader was waiting for them and must be woken.
    /// </summary>
    public int Write(ReadOnlySpan<byte> source, out bool wakeReader)
    {
        wakeReader = false;
        byte* p = Acquire();
        try
        {
            var (head, tail) = Counters(p);
            int count = (int)Math.Min(source.Length, Capacity - (head - tail));
            if (count == 0)
            {
                return 0;
            }

            int first = FirstPart(head, count);
            source[..first].CopyTo(Data(p, head, first));
            source[first..count].CopyTo(Data(p, head + first, count - first));
            Volatile.Write(ref *(long*)(p + HeadOffset), head + count);
            wakeReader = TakeWaiter(p + ReaderWaitingOffset);
            return count;
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    /// <summary>
    /// Copies as much of what was written as fits <paramref name="destination"/> and frees its room. Returns the
    /// bytes read (0: nothing was there), and whether the writer was waiting for room and must be woken.
    /// </summary>
    public int Read(Span<byte> destination, out bool wakeWriter)
    {
        wakeWriter = false;
        byte* p = Acquire();
        try
        {
            var (head, tail) = Counters(p);
            int count = (int)Math.Min(destination.Length, head - tail);
            if (count == 0)
            {
                return 0;
            }

            int first = FirstPart(tail, count);
            Data(p, tail, first).CopyTo(destination);
            Data(p, tail + first, count - first).CopyTo(destination[first..]);
            Volatile.Write(ref *(long*)(p + TailOffset), tail + count);
            wakeWriter = TakeWaiter(p + WriterWaitingOffset);
            return count;
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    /// <summary>
    /// The reader is about to sleep until woken. False: data arrived meanwhile, read again. True: sleep; a
    /// wake-up is sent or on its way. Exactly one wake-up answers each true.
    /// </summary>
    public bool PrepareReaderWait() => PrepareWait(ReaderWaitingOffset, reader: true);

    /// <summary>The writer is about to sleep until the reader frees room; as <see cref="PrepareReaderWait"/>.</summary>
    public bool PrepareWriterWait() => PrepareWait(WriterWaitingOffset, reader: false);

    /// <summary>
    /// Unlinks the file (writer only; the reader never names a path to delete). Both mappings stay valid; the
    /// memory goes back to the system when the last one is closed.
    /// </summary>
    public void Unlink()
    {
        var p = Interlocked.Exchange(ref path, null);
        if (p is not null)
        {
            try
            {
                File.Delete(p);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Already gone, or /dev/shm changed under us: nothing else to free.
            }
        }
    }

    /// <summary>Unlinks (writer) and unmaps; copies in progress finish first, later ones throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        Unlink();
        view.Dispose();
        file.Dispose();
    }

    /// <summary>
    /// Deletes ring files whose writer process is gone: one that died between creating its ring and the end of
    /// the handshake leaves its file behind.
    /// </summary>
    internal static void RemoveOrphans()
    {
        try
        {
            foreach (var file in new DirectoryInfo(Directory).EnumerateFiles(Prefix + "*"))
            {
                var match = NamePattern().Match(file.Name);
                if (match.Success && int.TryParse(match.Groups[1].Value, out int pid) && pid != Environment.ProcessId && !IsRunning(pid)
                    && DateTime.UtcNow - file.LastWriteTimeUtc > TimeSpan.FromMinutes(1))
                {
                    file.Delete();
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Another user's file, or one deleted meanwhile: not ours to clean.
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private bool PrepareWait(int offset, bool reader)
    {
        byte* p = Acquire();
        try
        {
            ref int waiting = ref *(int*)(p + offset);
            Interlocked.Exchange(ref waiting, 1);
            var (head, tail) = Counters(p);
            bool ready = reader ? head != tail : head - tail < Capacity;
            if (!ready)
            {
                return true;
            }

            // Ready after all: withdraw, unless the other side took the flag first and is sending its wake-up.
            return Interlocked.CompareExchange(ref waiting, 0, 1) != 1;
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    private static bool TakeWaiter(byte* flag)
    {
        ref int waiting = ref *(int*)flag;
        Interlocked.MemoryBarrier();
        return Volatile.Read(ref waiting) == 1 && Interlocked.CompareExchange(ref waiting, 0, 1) == 1;
    }

    /// <summary>Bytes written and read, each the only side's to store; throws when they do not fit the ring.</summary>
    private (long Head, long Tail) Counters(byte* p)
    {
        long head = Volatile.Read(ref *(long*)(p + HeadOffset));
        long tail = Volatile.Read(ref *(long*)(p + TailOffset));
        long used = head - tail;
        if (used < 0 || used > Capacity)
        {
            throw Corrupt(head, tail);
        }

        return (head, tail);
    }

    /// <summary>Of <paramref name="count"/> bytes of the stream from <paramref name="position"/>, how many lie before the ring's end.</summary>
    private int FirstPart(long position, int count) => (int)Math.Min(count, Capacity - (position & mask));

    /// <summary>The ring's bytes from stream position <paramref name="position"/>, not past its end.</summary>
    private Span<byte> Data(byte* p, long position, int length) => new(p + DataOffset + (position & mask), length);

    private void WriteHeader()
    {
        view.Write(0, Magic);
        view.Write(8, Capacity);
        view.WriteArray(16, Nonce, 0, NonceSize);
        view.Write(HeadOffset, 0L);
        view.Write(TailOffset, 0L);
        view.Write(ReaderWaitingOffset, 0);
        view.Write(WriterWaitingOffset, 0);
        view.Flush();
    }

    private byte* Acquire()
    {
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        return p + view.PointerOffset;
    }

    private IOException Corrupt(long head, long tail) =>
        new($"The shared-memory ring {Name} is corrupt: {head} bytes written and {tail} read do not fit a ring of {Capacity}.");

    [GeneratedRegex(@"^actortrain-ring-(\d{1,10})-[0-9a-f]{32}$")]
    private static partial Regex NamePattern();
}
