using System.Buffers;
using MessagePack;

namespace ActorTrain.Cluster.Tests.Serialization;

/// <summary>Hand-written MessagePack, for payloads no wire message would produce.</summary>
internal static class MessagePackBytes
{
    public delegate void Write(ref MessagePackWriter writer);

    public static byte[] Pack(Write write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        write(ref writer);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }
}
