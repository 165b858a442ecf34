using ActorTrain.TrainerActors.Torch;
using TorchSharp;

namespace ActorTrain.TrainerActors.Tests.Torch;

[Collection(TorchRandomCollection.Name)]
public class TorchNativeTests
{
    [Fact]
    public void TorchSharp_loads_and_runs_a_backward_pass()
    {
        // Fails with a TypeInitializationException where libLibTorchSharp.so cannot be loaded
        // (e.g. the build did not mark GLIBCXX_3.4.32 weak on a system with an older libstdc++).
        using var x = torch.tensor(new float[] { 1, 2, 3 }, requires_grad: true);
        using var y = (x * x).sum();
        y.backward();
        Assert.Equal(new float[] { 2, 4, 6 }, x.grad!.data<float>().ToArray());
    }

    [Fact]
    public void The_build_marks_the_GLIBCXX_3_4_32_requirement_weak_in_the_output_copy()
    {
        var lib = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!OperatingSystem.IsLinux() || !File.Exists(lib)) return;
        Assert.True(ElfVersionFlags.IsWeak(File.ReadAllBytes(lib), "GLIBCXX_3.4.32"), $"GLIBCXX_3.4.32 is not weak in {lib}");
    }

    [Fact]
    public void OneDnn_can_be_switched_off_and_on()
    {
        Assert.True(TorchRuntime.TrySetMkldnn(false, out var detail), detail);
        using var conv = torch.nn.Conv2d(1, 2, 3);
        using var input = torch.randn(2, 1, 8, 8);
        using var output = conv.call(input);
        Assert.Equal(new long[] { 2, 2, 6, 6 }, output.shape);
        Assert.True(TorchRuntime.TrySetMkldnn(true, out detail), detail);
        Assert.True(TorchRuntime.TrySetMkldnn(false, out detail), detail);
    }
}

/// <summary>Reads the Vernaux flags of an ELF64 file, independently of the build task that sets them.</summary>
internal static class ElfVersionFlags
{
    public static bool IsWeak(byte[] b, string version)
    {
        var shoff = (long)BitConverter.ToUInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A), shnum = BitConverter.ToUInt16(b, 0x3C);
        for (var i = 0; i < shnum; i++)
        {
            var sh = (int)(shoff + (long)i * shentsize);
            if (BitConverter.ToUInt32(b, sh + 4) != 0x6ffffffe) continue;
            var offset = (int)BitConverter.ToUInt64(b, sh + 0x18);
            var strtab = (int)BitConverter.ToUInt64(b, (int)(shoff + BitConverter.ToUInt32(b, sh + 0x28) * shentsize) + 0x18);
            for (int vn = offset, n = 0; n < BitConverter.ToUInt32(b, sh + 0x2C); n++)
            {
                for (int aux = vn + (int)BitConverter.ToUInt32(b, vn + 8), a = 0; a < BitConverter.ToUInt16(b, vn + 2); a++)
                {
                    var nameAt = strtab + (int)BitConverter.ToUInt32(b, aux + 8);
                    var end = Array.IndexOf(b, (byte)0, nameAt);
                    if (System.Text.Encoding.ASCII.GetString(b, nameAt, end - nameAt) == version)
                        return (BitConverter.ToUInt16(b, aux + 4) & 0x2) != 0;
                    aux += (int)BitConverter.ToUInt32(b, aux + 12);
                }
                vn += (int)BitConverter.ToUInt32(b, vn + 12);
            }
        }
        return false;
    }
}
