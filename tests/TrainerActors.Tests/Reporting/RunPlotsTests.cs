using ActorTrain.Hosting;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Tests.Reporting;

public sealed class RunPlotsTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("actortrain-plots-");

    public void Dispose() => _dir.Delete(recursive: true);

    private static List<LossPoint> Curve(int points) =>
        Enumerable.Range(1, points).Select(i => new LossPoint(i * 20L, 2.3 * Math.Exp(-i / 8.0) + 0.1)).ToList();

    private static Dictionary<string, double> Accuracy(double value) => new() { ["test_accuracy"] = value };

    private static List<EpochPoint> Epochs(int count) =>
        Enumerable.Range(1, count).Select(e => new EpochPoint(e, e * 70L, 2.0 / e, Accuracy(0.6 + (0.03 * e)))).ToList();

    [Fact]
    public void Writes_the_loss_and_a_plot_per_metric_as_pngs_of_the_requested_size()
    {
        var written = RunPlots.Write(_dir.FullName, Curve(35), Epochs(10), width: 640, height: 400);

        Assert.Equal([Path.Combine(_dir.FullName, "loss.png"), Path.Combine(_dir.FullName, "test_accuracy.png")], written);
        Assert.All(written, png => Assert.Equal((640, 400), PngFile.ReadSize(png)));
    }

    [Fact]
    public void A_job_with_metrics_of_its_own_gets_a_plot_named_after_each()
    {
        List<EpochPoint> epochs = [new(1, 70, 1.5, new Dictionary<string, double> { ["test_mse"] = 4.5, ["test_mae"] = 1.2 }),
            new(2, 140, 1.1, new Dictionary<string, double> { ["test_mse"] = 2.5, ["test_mae"] = 0.9 })];

        var written = RunPlots.Write(_dir.FullName, Curve(5), epochs);

        Assert.Equal(["loss.png", "test_mae.png", "test_mse.png"], written.Select(Path.GetFileName));
        Assert.All(written, png => Assert.Equal((800, 500), PngFile.ReadSize(png)));
    }

    [Fact]
    public void Default_size_is_800_by_500()
    {
        var written = RunPlots.Write(_dir.FullName, Curve(5), Epochs(1));

        Assert.Equal(2, written.Count);
        Assert.All(written, png => Assert.Equal((800, 500), PngFile.ReadSize(png)));
    }

    [Fact]
    public void Empty_series_still_give_a_valid_loss_png()
    {
        var written = RunPlots.Write(_dir.FullName, [], [], width: 320, height: 200);

        Assert.Equal((320, 200), PngFile.ReadSize(Assert.Single(written)));
    }

    [Fact]
    public void Non_finite_values_and_unmeasured_epochs_are_skipped()
    {
        List<LossPoint> curve = [new(20, 2.1), new(40, double.NaN), new(60, double.PositiveInfinity), new(80, 1.2)];
        List<EpochPoint> epochs = [new(1, 70, double.NaN, new Dictionary<string, double>()), new(2, 140, 1.1, Accuracy(double.NaN)), new(3, 210, 0.9, Accuracy(0.91))];

        var written = RunPlots.Write(_dir.FullName, curve, epochs);

        Assert.Equal(["loss.png", "test_accuracy.png"], written.Select(Path.GetFileName));
        Assert.All(written, png => Assert.Equal((800, 500), PngFile.ReadSize(png)));
    }

    [Fact]
    public void Series_of_nothing_but_NaN_count_as_empty()
    {
        var written = RunPlots.Write(
            _dir.FullName,
            [new(1, double.NaN)],
            [new(1, 70, double.NaN, Accuracy(double.NaN)), new(2, 140, double.NaN, Accuracy(double.NaN))]);

        Assert.Equal(2, written.Count);
        Assert.All(written, png => Assert.Equal((800, 500), PngFile.ReadSize(png)));
    }

    [Fact]
    public void Creates_the_folder_and_replaces_earlier_plots_leaving_no_temporary_files()
    {
        var outDir = Path.Combine(_dir.FullName, "run", "plots");
        RunPlots.Write(outDir, Curve(3), Epochs(1), width: 300, height: 200);
        RunPlots.Write(outDir, Curve(30), Epochs(5), width: 500, height: 300);

        Assert.Equal(["loss.png", "test_accuracy.png"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order());
        Assert.Equal((500, 300), PngFile.ReadSize(Path.Combine(outDir, "loss.png")));
    }

    [Theory]
    [InlineData(0, 500)]
    [InlineData(800, -1)]
    public void Refuses_a_size_that_is_not_positive(int width, int height)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RunPlots.Write(_dir.FullName, [], [], width, height));
    }
}
