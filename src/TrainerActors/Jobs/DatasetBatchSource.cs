using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Jobs;

/// <summary>
/// An <see cref="IBatchSource"/> over a TorchSharp <c>torch.utils.data.Dataset</c>: a batch
/// stacks the samples' <paramref name="inputKey"/> and <paramref name="targetKey"/> tensors along a
/// new first dimension. Every sample's tensors must have the same shapes.
/// </summary>
public sealed class DatasetBatchSource(utils.data.Dataset dataset, string inputKey = "data", string targetKey = "label") : IBatchSource
{
    public int Count { get; } = dataset.Count <= int.MaxValue
        ? (int)dataset.Count
        : throw new ArgumentException($"the data set has {dataset.Count} samples; at most {int.MaxValue} are supported", nameof(dataset));

    public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
    {
        var inputs = new Tensor[indices.Length];
        var targets = new Tensor[indices.Length];
        for (var i = 0; i < indices.Length; i++)
        {
            var sample = dataset.GetTensor(indices[i]);
            inputs[i] = Field(sample, inputKey, indices[i]);
            targets[i] = Field(sample, targetKey, indices[i]);
        }
        var input = stack(inputs);
        var target = stack(targets);
        return device.type == DeviceType.CPU ? (input, target) : (input.to(device), target.to(device));
    }

    private static Tensor Field(Dictionary<string, Tensor> sample, string key, int index) =>
        sample.TryGetValue(key, out var tensor)
            ? tensor
            : throw new KeyNotFoundException($"sample {index} of the data set has no tensor named '{key}' (it has: {string.Join(", ", sample.Keys)})");
}
