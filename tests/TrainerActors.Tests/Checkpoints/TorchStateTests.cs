using ActorTrain.TrainerActors.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Checkpoints;

[Collection(TorchRandomCollection.Name)]
public sealed class TorchStateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actortrain-ckpt-torch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Parameters plus buffers of three dtypes (BatchNorm's running statistics and its int64 batch count).</summary>
    private static nn.Module<Tensor, Tensor> SmallNet(int seed)
    {
        torch.manual_seed(seed);
        return nn.Sequential(
            ("fc1", nn.Linear(6, 8)),
            ("norm", nn.BatchNorm1d(8)),
            ("relu", nn.ReLU()),
            ("fc2", nn.Linear(8, 3)));
    }

    private static optim.Optimizer Sgd(nn.Module<Tensor, Tensor> model) =>
        optim.SGD(model.parameters(), learningRate: 0.05, momentum: 0.9);

    private static List<(Tensor input, Tensor target)> Batches(int count)
    {
        var generator = new torch.Generator(seed: 99);
        return Enumerable.Range(0, count)
            .Select(_ => (torch.randn([5, 6], generator: generator), torch.randn([5, 3], generator: generator)))
            .ToList();
    }

    private static float Step(nn.Module<Tensor, Tensor> model, optim.Optimizer optimizer, (Tensor input, Tensor target) batch)
    {
        using var scope = torch.NewDisposeScope();
        optimizer.zero_grad();
        var loss = nn.functional.mse_loss(model.call(batch.input), batch.target);
        loss.backward();
        optimizer.step();
        return loss.item<float>();
    }

    private static byte[][] StateBytes(nn.Module module) =>
        module.named_parameters().Select(p => p.parameter.bytes.ToArray())
            .Concat(module.named_buffers().Select(b => b.buffer.bytes.ToArray()))
            .ToArray();

    [Fact]
    public void Training_resumed_from_a_checkpoint_continues_bitwise_like_an_uninterrupted_run()
    {
        var batches = Batches(7);

        using var uninterrupted = SmallNet(seed: 1);
        using var uninterruptedSgd = Sgd(uninterrupted);
        var expectedLosses = batches.Select(b => Step(uninterrupted, uninterruptedSgd, b)).ToList();

        var store = new CheckpointStore(_dir, keep: 2);
        using (var first = SmallNet(seed: 1))
        using (var firstSgd = Sgd(first))
        {
            foreach (var b in batches.Take(3)) Step(first, firstSgd, b);
            store.Save(new TrainingState
            {
                JobId = "test", ModelFingerprint = "small", Epoch = 1, SamplesConsumedInEpoch = 15,
                GlobalStep = 3, WorldSize = 1, Seed = 1, CreatedUtc = DateTime.UtcNow,
                Sections = new Dictionary<string, byte[]>
                {
                    [TrainingState.ModelSection] = ModelState.Save(first),
                    [TrainingState.OptimizerSection] = OptimizerStateBytes.Save(firstSgd),
                },
            });
        }

        using var resumed = SmallNet(seed: 2);
        using var resumedSgd = Sgd(resumed);
        var loaded = store.LoadNewestValid().State!;
        ModelState.Load(resumed, loaded.Section(TrainingState.ModelSection)!);
        OptimizerStateBytes.Load(resumedSgd, loaded.Section(TrainingState.OptimizerSection)!);
        var resumedLosses = batches.Skip(3).Select(b => Step(resumed, resumedSgd, b)).ToList();

        Assert.Equal(expectedLosses.Skip(3), resumedLosses);
        Assert.Equal(StateBytes(uninterrupted), StateBytes(resumed));
    }

    [Fact]
    public void Without_the_optimizer_state_the_resumed_run_diverges()
    {
        // Shows that the momentum buffers carry information the resume test depends on.
        var batches = Batches(5);
        using var uninterrupted = SmallNet(seed: 1);
        using var uninterruptedSgd = Sgd(uninterrupted);
        foreach (var b in batches) Step(uninterrupted, uninterruptedSgd, b);

        using var first = SmallNet(seed: 1);
        using var firstSgd = Sgd(first);
        foreach (var b in batches.Take(3)) Step(first, firstSgd, b);
        using var resumed = SmallNet(seed: 2);
        using var freshSgd = Sgd(resumed);
        ModelState.Load(resumed, ModelState.Save(first));
        foreach (var b in batches.Skip(3)) Step(resumed, freshSgd, b);

        Assert.NotEqual(StateBytes(uninterrupted), StateBytes(resumed));
    }

    [Fact]
    public void Model_state_bytes_are_deterministic_and_restore_parameters_and_buffers()
    {
        using var source = SmallNet(seed: 1);
        using var sgd = Sgd(source);
        Step(source, sgd, Batches(1)[0]); // moves BatchNorm's running statistics off their defaults
        var bytes = ModelState.Save(source);
        Assert.Equal(bytes, ModelState.Save(source));

        using var target = SmallNet(seed: 5);
        ModelState.Load(target, bytes);
        Assert.Equal(StateBytes(source), StateBytes(target));
    }

    [Fact]
    public void Model_state_of_another_shape_is_refused_naming_the_tensor_and_leaves_the_model_untouched()
    {
        using var source = SmallNet(seed: 1);
        torch.manual_seed(1);
        using var wider = nn.Sequential(("fc1", nn.Linear(6, 9)), ("norm", nn.BatchNorm1d(9)), ("relu", nn.ReLU()), ("fc2", nn.Linear(9, 3)));
        var before = StateBytes(wider);

        var e = Assert.Throws<InvalidDataException>(() => ModelState.Load(wider, ModelState.Save(source)));

        Assert.Contains("fc1.bias", e.Message);
        Assert.Contains("[8]", e.Message);
        Assert.Equal(before, StateBytes(wider));
    }

    [Fact]
    public void Model_state_with_other_names_lists_what_is_missing_and_what_is_extra()
    {
        using var source = SmallNet(seed: 1);
        torch.manual_seed(1);
        using var other = nn.Sequential(("fc1", nn.Linear(6, 8)), ("relu", nn.ReLU()), ("out", nn.Linear(8, 3)));

        var e = Assert.Throws<InvalidDataException>(() => ModelState.Load(other, ModelState.Save(source)));

        Assert.Contains("missing from the checkpoint: out.bias, out.weight", e.Message);
        Assert.Contains("not in the model: fc2.bias, fc2.weight, norm.bias", e.Message);
    }

    [Fact]
    public void Truncated_model_state_is_refused()
    {
        using var source = SmallNet(seed: 1);
        var bytes = ModelState.Save(source);
        var e = Assert.Throws<InvalidDataException>(() => ModelState.Load(source, bytes[..(bytes.Length - 3)]));
        Assert.Contains("model state", e.Message);
    }

    [Fact]
    public void Optimizer_state_of_a_fresh_optimizer_round_trips()
    {
        using var model = SmallNet(seed: 1);
        using var sgd = Sgd(model);
        using var other = Sgd(model);
        OptimizerStateBytes.Load(other, OptimizerStateBytes.Save(sgd));
    }

    [Fact]
    public void Optimizer_state_of_another_optimizer_type_is_refused_naming_both()
    {
        using var model = SmallNet(seed: 1);
        using var sgd = Sgd(model);
        using var adam = optim.Adam(model.parameters());

        var e = Assert.Throws<InvalidDataException>(() => OptimizerStateBytes.Load(adam, OptimizerStateBytes.Save(sgd)));

        Assert.Contains("SGD", e.Message);
        Assert.Contains("Adam", e.Message);
    }
}
