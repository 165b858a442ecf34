using ActorTrain.Cluster.Serialization;
using Akka.Actor;
using Xunit.Abstractions;
namespace ActorTrain.Cluster.Tests.Serialization;
public class Explore(ITestOutputHelper output)
{
    [Fact]
    public void Matrix()
    {
        using var system = ActorSystem.Create("x", TestConfig.Local());
        var ser = (ActorTrainMessageSerializer)system.Serialization.FindSerializerForType(typeof(ActorTrain.Cluster.Protocol.EndRun));
        foreach (var a in Samples.Full.Values)
        foreach (var b in Samples.Full.Values)
        {
            if (a.GetType() == b.GetType()) continue;
            var bytes = ser.ToBinary(a);
            try { var r = ser.FromBinary(bytes, ser.Manifest(b)); output.WriteLine($"OK {a.GetType().Name} as {b.GetType().Name}: {r}"); }
            catch (Exception e) { if (e is not System.Runtime.Serialization.SerializationException) output.WriteLine($"BAD {e.GetType()}"); }
        }
        for (int i = 0; i < 3; i++) {
        var deep = new List<byte> { 0x99 };
        var first = ser.ToBinary(Samples.Full[typeof(ActorTrain.Cluster.Protocol.GradientChunk)]);
        deep.AddRange(first.Skip(1));
        for (int d = 0; d < 120000; d++) deep.Add(0x91);
        deep.Add(0xc0);
        try { ser.FromBinary(deep.ToArray(), "chunk"); output.WriteLine("deep OK"); } catch (Exception e) { output.WriteLine(e.ToString()); }
        }
    }
}
