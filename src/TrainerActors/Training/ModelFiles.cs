using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Training;

/// <summary>Model state files in PyTorch's format (loadable with torch.load in Python).</summary>
internal static class ModelFiles
{
    /// <summary>Writes the module's state_dict atomically (temp file, then rename).</summary>
    public static void SaveStateDict(nn.Module module, string path)
    {
        var tmp = path + ".tmp";
        module.save_py(tmp);
        File.Move(tmp, path, overwrite: true);
    }

    public static void LoadStateDict(nn.Module module, string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"model file not found: {path}", path);
        module.load_py(path);
    }
}
