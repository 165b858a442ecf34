using ActorTrain.Cluster.Coordination;
using ActorTrain.TrainerActors.Jobs;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Jobs;

[Collection(TorchRandomCollection.Name)]
public sealed class JobApiTests
{
    private static TrainingContext Context(int epoch = 1, long step = 0) => new(0, 2, 0, CPU, 1, epoch, step);

    [Fact]
    public void Gradient_clipping_scales_the_joint_norm_down_to_the_limit_and_leaves_smaller_ones()
    {
        using var scope = NewDisposeScope();
        var model = nn.Linear(3, 1, hasBias: false);
        var optimizer = optim.SGD(model.parameters(), 0.1);
        var weight = model.parameters().Single();
        weight.grad = tensor(new float[] { 3, 4, 0 }).reshape(1, 3);

        new ClipGradientNorm(1.0).BeforeOptimizerStep(Context(), model, optimizer);
        Assert.Equal(1.0, weight.grad!.norm().item<float>(), 5);
        var clipped = weight.grad!.data<float>().ToArray();
        Assert.Equal([0.6, 0.8, 0.0], clipped.Select(v => Math.Round(v, 5)));

        new ClipGradientNorm(10.0).BeforeOptimizerStep(Context(), model, optimizer);
        Assert.Equal(clipped, weight.grad!.data<float>().ToArray());
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    public void Gradient_clipping_refuses_a_limit_that_is_not_positive(double limit) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new ClipGradientNorm(limit));

    [Fact]
    public void An_epoch_schedule_sets_every_group_s_rate_from_the_epoch_alone()
    {
        using var scope = NewDisposeScope();
        var model = nn.Linear(2, 2);
        var optimizer = optim.SGD(model.parameters(), 0.1);
        var schedule = new EpochLearningRate(epoch => 0.1 * Math.Pow(0.5, epoch - 1));

        schedule.OnEpochBegin(Context(epoch: 3, step: 140), optimizer);
        Assert.All(optimizer.ParamGroups, g => Assert.Equal(0.025, g.LearningRate, 12));
        schedule.OnEpochBegin(Context(epoch: 1), optimizer);
        Assert.All(optimizer.ParamGroups, g => Assert.Equal(0.1, g.LearningRate, 12));

        var bad = new EpochLearningRate(_ => -0.5);
        var e = Assert.Throws<InvalidOperationException>(() => bad.OnEpochBegin(Context(epoch: 2), optimizer));
        Assert.Contains("epoch 2", e.Message);
    }

    private sealed class Squares(int count) : utils.data.Dataset
    {
        public override long Count => count;

        public override Dictionary<string, Tensor> GetTensor(long index) => new()
        {
            ["data"] = tensor(new float[] { index, index * index }),
            ["label"] = tensor(index % 2),
        };
    }

    [Fact]
    public void A_torch_dataset_gives_batches_stacked_in_the_order_of_the_indices()
    {
        using var scope = NewDisposeScope();
        var source = new DatasetBatchSource(new Squares(10));

        var (input, target) = source.GetBatch([7, 2, 3], CPU);

        Assert.Equal(10, source.Count);
        Assert.Equal([3L, 2L], input.shape);
        Assert.Equal([7f, 49f, 2f, 4f, 3f, 9f], input.data<float>().ToArray());
        Assert.Equal([1L, 0L, 1L], target.data<long>().ToArray());
    }

    [Fact]
    public void A_torch_dataset_without_the_named_tensor_says_which_names_it_has()
    {
        using var scope = NewDisposeScope();
        var source = new DatasetBatchSource(new Squares(4), targetKey: "y");

        var e = Assert.Throws<KeyNotFoundException>(() => source.GetBatch([1], CPU));
        Assert.Contains("'y'", e.Message);
        Assert.Contains("data, label", e.Message);
    }

    [Theory]
    [InlineData("Test_MSE", "lower-case")]
    [InlineData("2nd", "starting with a letter")]
    [InlineData("test-mse", "lower-case")]
    [InlineData("", "lower-case")]
    [InlineData("steps", "field of run-report.json")]
    [InlineData("mean_loss", "field of run-report.json")]
    public void A_metric_name_that_the_report_cannot_hold_is_refused_naming_the_job(string name, string why)
    {
        var e = Assert.Throws<ArgumentException>(() => JobMetrics.Validate(new Dictionary<string, double> { [name] = 1 }, "regression"));
        Assert.Contains("regression", e.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void Metrics_read_as_words_in_log_lines()
    {
        JobMetrics.Validate(new Dictionary<string, double> { ["test_accuracy"] = 0.9, ["test_mse2"] = 1 }, "job");
        Assert.Equal(", test accuracy 0.9330, test mse 12.5000",
            JobMetrics.Describe(new Dictionary<string, double> { ["test_accuracy"] = 0.933, ["test_mse"] = 12.5 }));
        Assert.Equal("", JobMetrics.Describe(new Dictionary<string, double>()));
    }
}
