using ActorTrain.Examples.Mnist;
using ActorTrain.TrainerActors.Tests.Data;
using ActorTrain.TrainerActors.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>The buckets and the wire carry float32: a replica whose model has another dtype is refused when it is built.</summary>
[Collection(TorchRandomCollection.Name)]
public class ParameterDtypeTests
{
    private static ModelJob DoubleHeadJob() =>
        new("double-head", () => nn.Sequential(("body", nn.Linear(784, 32)), ("head", nn.Linear(32, 10).to(ScalarType.Float64))));

    [Fact]
    public void A_float64_parameter_is_refused_at_start_with_its_name_and_dtype()
    {
        var e = Assert.Throws<NotSupportedException>(() => new Replica(DoubleHeadJob(), seed: 1, torch.CPU, 1024 * 1024));
        Assert.Contains("\"head.weight\"", e.Message);
        Assert.Contains("Float64", e.Message);
        Assert.Contains("double-head", e.Message);
    }

    [Fact]
    public void A_float32_model_is_accepted()
    {
        using var replica = new Replica(new MnistJob(DataTestSupport.MnistDataDirectory), seed: 1, torch.CPU, 1024 * 1024);
        Assert.All(replica.Model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
    }
}
