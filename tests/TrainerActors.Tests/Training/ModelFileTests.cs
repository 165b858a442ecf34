using ActorTrain.Examples.Mnist;
using ActorTrain.TrainerActors.Training;
using TorchSharp;

namespace ActorTrain.TrainerActors.Tests.Training;

[Collection(TorchRandomCollection.Name)]
public class ModelFileTests
{
    [Fact]
    public void A_saved_model_pth_loads_into_a_fresh_model_with_the_same_outputs()
    {
        var dir = Directory.CreateTempSubdirectory("actortrain-model-").FullName;
        try
        {
            torch.manual_seed(3);
            using var trained = new MnistNet();
            using var input = torch.randn(4, 1, 28, 28);
            using var expected = trained.call(input);
            var path = Path.Combine(dir, "model.pth");
            ModelFiles.SaveStateDict(trained, path);

            torch.manual_seed(4);
            using var fresh = new MnistNet();
            using (var before = fresh.call(input)) Assert.False(before.allclose(expected));
            ModelFiles.LoadStateDict(fresh, path);
            using var actual = fresh.call(input);
            Assert.Equal(expected.data<float>().ToArray(), actual.data<float>().ToArray());
            Assert.False(File.Exists(path + ".tmp"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Loading_a_missing_model_file_names_the_file()
    {
        using var model = new MnistNet();
        var e = Assert.Throws<FileNotFoundException>(() => ModelFiles.LoadStateDict(model, "/nonexistent/model.pth"));
        Assert.Contains("/nonexistent/model.pth", e.Message);
    }
}
