using ActorTrain.Hosting;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Tests.Reporting;

public sealed class RunPlotsTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("actortrain-plots-");

    public void Dispose() => _dir.Delete(recursive: true);

    private static List<LossPoint> Curve(int points) =>
        Enumerable.Range(1, points).Select(i => new LossPoint(i * 20L, 2.3 * Math.Exp(-i / 8.0) + 0.1)).ToList();

    private static List<EpochPoint> Epochs(int count) =>
        Enumerable.Range(1, count).Select(e => new EpochPoint(e, e * 70L, 2.0 / e, 0.6 + (0.03 * e))).ToList();

    [Fact]
    public void Writes_both_plots_as_pngs_of_the_requested_size()
    {
        var (loss, accuracy) = RunPlots.Write(_dir.FullName, Curve(35), Epochs(10), width: 640, height: 400);

        Assert.Equal(Path.Combine(_dir.FullName, "loss.png"), loss);
        Assert.Equal(Path.Combine(_dir.FullName, "accuracy.png"), accuracy);
        Assert.Equal((640, 400), PngFile.ReadSize(loss));
        Assert.Equal((640, 400), PngFile.ReadSize(accuracy));
    }

    [Fact]
    public void Default_size_is_800_by_500()
    {
        var (loss, accuracy) = RunPlots.Write(_dir.FullName, Curve(5), Epochs(1));

        Assert.Equal((800, 500), PngFile.ReadSize(loss));
        Assert.Equal((800, 500), PngFile.ReadSize(accuracy));
    }

    [Fact]
    public void Empty_series_still_give_valid_pngs()
    {
        var (loss, accuracy) = RunPlots.Write(_dir.FullName, [], [], width: 320, height: 200);

        Assert.Equal((320, 200), PngFile.ReadSize(loss));
        Assert.Equal((320, 200), PngFile.ReadSize(accuracy));
    }

    [Fact]
    public void Non_finite_values_and_unmeasured_accuracy_are_skipped()
    {
        List<LossPoint> curve = [new(20, 2.1), new(40, double.NaN), new(60, double.PositiveInfinity), new(80, 1.2)];
        List<EpochPoint> epochs = [new(1, 70, double.NaN, -1), new(2, 140, 1.1, double.NaN), new(3, 210, 0.9, 0.91)];

        var (loss, accuracy) = RunPlots.Write(_dir.FullName, curve, epochs);

        Assert.Equal((800, 500), PngFile.ReadSize(loss));
        Assert.Equal((800, 500), PngFile.ReadSize(accuracy));
    }

    [Fact]
    public void Series_of_nothing_but_NaN_count_as_empty()
    {
        var (loss, accuracy) = RunPlots.Write(
            _dir.FullName,
            [new(1, double.NaN)],
            [new(1, 70, double.NaN, double.NaN), new(2, 140, double.NaN, -1)]);

        Assert.Equal((800, 500), PngFile.ReadSize(loss));
        Assert.Equal((800, 500), PngFile.ReadSize(accuracy));
    }

    [Fact]
    public void Creates_the_folder_and_replaces_earlier_plots_leaving_no_temporary_files()
    {
        var outDir = Path.Combine(_dir.FullName, "run", "plots");
        RunPlots.Write(outDir, Curve(3), Epochs(1), width: 300, height: 200);
        RunPlots.Write(outDir, Curve(30), Epochs(5), width: 500, height: 300);

        Assert.Equal(["accuracy.png", "loss.png"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order());
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
