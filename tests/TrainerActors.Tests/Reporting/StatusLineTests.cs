using System.Globalization;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Tests.Reporting;

public sealed class StatusLineTests
{
    [Fact]
    public void Is_one_compact_line()
    {
        Assert.Equal("node1: epoch 3/10 step 40/70 · 12.3 steps/s", StatusLine.Compact("node1", 3, 10, 40, 70, 12.34));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void Leaves_out_a_rate_that_is_not_known(double rate)
    {
        Assert.Equal("node0: epoch 1/2 step 0/70", StatusLine.Compact("node0", 1, 2, 0, 70, rate));
    }

    [Fact]
    public void Does_not_depend_on_the_current_culture()
    {
        var saved = CultureInfo.CurrentCulture;
        try
        {
            CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE");
            Assert.Equal("w: epoch 1/1 step 1000/2000 · 1234.5 steps/s", StatusLine.Compact("w", 1, 1, 1000, 2000, 1234.5));
        }
        finally
        {
            CultureInfo.CurrentCulture = saved;
        }
    }
}
