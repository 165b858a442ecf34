using System.Runtime.InteropServices;
using TorchSharp;

namespace ActorTrain.TrainerActors.Torch;

/// <summary>Process-wide libtorch switches.</summary>
internal static class TorchRuntime
{
    private static readonly object Gate = new();
    private static bool? _mkldnn;

    /// <summary>
    /// Turns libtorch's oneDNN (mkldnn) CPU kernels on or off for the whole process. TorchSharp
    /// has no API for it, so this calls libtorch's exported <c>at::globalContext()</c> and
    /// <c>at::Context::setUserEnabledMkldnn(bool)</c> directly. Returns false, with the reason,
    /// where the symbols cannot be found (another libtorch build).
    /// </summary>
    public static bool TrySetMkldnn(bool enabled, out string detail) =>
        TrySetContextFlag("_ZN2at7Context20setUserEnabledMkldnnEb", "setUserEnabledMkldnn", "oneDNN", enabled, ref _mkldnn, out detail);

    /// <summary>
    /// Turns libtorch's NNPACK convolutions on or off for the whole process
    /// (<c>at::Context::setUserEnabledNNPACK(bool)</c>). Where NNPACK cannot initialise (AMD Zen 5:
    /// "Unsupported hardware") libtorch warns on every convolution that could use it; off, it is
    /// never tried.
    /// </summary>
    public static bool TrySetNnpack(bool enabled, out string detail) =>
        TrySetContextFlag("_ZN2at7Context20setUserEnabledNNPACKEb", "setUserEnabledNNPACK", "NNPACK", enabled, ref _nnpack, out detail);

    private static bool? _nnpack;

    private static bool TrySetContextFlag(string symbol, string setter, string what, bool enabled, ref bool? current, out string detail)
    {
        lock (Gate)
        {
            if (current == enabled) { detail = "unchanged"; return true; }
            _ = torch.ones(1); // makes sure TorchSharp has loaded libtorch
            if (!TryLoadTorchCpu(out var handle, out detail)) return false;
            if (!NativeLibrary.TryGetExport(handle, "_ZN2at13globalContextEv", out var globalContext) ||
                !NativeLibrary.TryGetExport(handle, symbol, out var set))
            {
                detail = $"libtorch_cpu does not export at::globalContext / at::Context::{setter}";
                return false;
            }
            unsafe
            {
                var context = ((delegate* unmanaged<IntPtr>)globalContext)();
                ((delegate* unmanaged<IntPtr, byte, void>)set)(context, enabled ? (byte)1 : (byte)0);
            }
            current = enabled;
            detail = $"{what} {(enabled ? "on" : "off")}";
            return true;
        }
    }

    private static bool TryLoadTorchCpu(out IntPtr handle, out string detail)
    {
        var names = OperatingSystem.IsWindows() ? new[] { "torch_cpu.dll" }
            : OperatingSystem.IsMacOS() ? new[] { "libtorch_cpu.dylib" } : new[] { "libtorch_cpu.so" };
        var dirs = new[]
        {
            Path.Combine(AppContext.BaseDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native"),
            Path.Combine(AppContext.BaseDirectory, "runtimes", OperatingSystem.IsLinux() ? "linux-x64" : "", "native"),
            AppContext.BaseDirectory,
        };
        foreach (var dir in dirs)
            foreach (var name in names)
            {
                var path = Path.Combine(dir, name);
                if (File.Exists(path) && NativeLibrary.TryLoad(path, out handle)) { detail = path; return true; }
            }
        foreach (var name in names)
            if (NativeLibrary.TryLoad(name, out handle)) { detail = name; return true; }
        handle = IntPtr.Zero;
        detail = $"cannot find {names[0]} beside the application";
        return false;
    }

    /// <summary>Whether TorchSharp sees CUDA devices (false on the CPU build).</summary>
    public static bool CudaAvailable()
    {
        try { return torch.cuda.is_available(); }
        catch (Exception) { return false; }
    }
}
