using ScottPlot;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.Hosting;

/// <summary>Draws a run's training curves as PNG files (ScottPlot on SkiaSharp).</summary>
internal static class RunPlots
{
    public const string LossFileName = "loss.png";

    /// <summary>The file a job metric is drawn in: its name, e.g. <c>test_accuracy.png</c>.</summary>
    public static string MetricFileName(string metric) => metric + ".png";

    // Skia's default face is whatever font it finds first (DejaVu Serif on Debian); prefer a sans one.
    private static readonly string[] PreferredFonts = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Open Sans", "Arial", "Helvetica"];
    private static readonly Lazy<string?> SansFont = new(() =>
    {
        var installed = new HashSet<string>(SkiaSharp.SKFontManager.Default.FontFamilies, StringComparer.OrdinalIgnoreCase);
        return PreferredFonts.FirstOrDefault(installed.Contains);
    });

    /// <summary>
    /// Writes <c>loss.png</c> (training loss against global step, with each epoch's mean loss
    /// marked at its end step) and one <c>NAME.png</c> per job metric (its value against epoch)
    /// into <paramref name="outDir"/>, creating it if needed. Non-finite values are left out; a
    /// plot with nothing to draw says "no data". Each file is written to a temporary name and
    /// renamed, so a reader never sees half a PNG.
    /// </summary>
    /// <returns>The full paths of the files: the loss plot first, then the metrics' in name order.</returns>
    public static IReadOnlyList<string> Write(
        string outDir,
        IReadOnlyList<LossPoint> lossCurve,
        IReadOnlyList<EpochPoint> epochs,
        int width = 800,
        int height = 500)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        ArgumentNullException.ThrowIfNull(lossCurve);
        ArgumentNullException.ThrowIfNull(epochs);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);

        var dir = Path.GetFullPath(outDir);
        Directory.CreateDirectory(dir);

        var lossPath = Path.Combine(dir, LossFileName);
        WriteAtomically(lossPath, LossPlot(lossCurve, epochs).GetImageBytes(width, height, ImageFormat.Png));
        var written = new List<string> { lossPath };
        foreach (var metric in epochs.SelectMany(e => e.Metrics.Keys).Distinct().Order(StringComparer.Ordinal))
        {
            var path = Path.Combine(dir, MetricFileName(metric));
            WriteAtomically(path, MetricPlot(epochs, metric).GetImageBytes(width, height, ImageFormat.Png));
            written.Add(path);
        }
        return written;
    }

    private static Plot NewPlot()
    {
        var plot = new Plot();
        if (SansFont.Value is { } font)
        {
            plot.Font.Set(font);
        }

        return plot;
    }

    private static Plot LossPlot(IReadOnlyList<LossPoint> lossCurve, IReadOnlyList<EpochPoint> epochs)
    {
        var plot = NewPlot();
        plot.Title("Training loss");
        plot.XLabel("step");
        plot.YLabel("loss");

        var logged = lossCurve.Where(p => double.IsFinite(p.Loss)).OrderBy(p => p.Step).ToArray();
        var means = epochs.Where(e => double.IsFinite(e.MeanLoss)).OrderBy(e => e.EndStep).ToArray();

        if (logged.Length > 0)
        {
            var line = plot.Add.ScatterLine(
                logged.Select(p => (double)p.Step).ToArray(),
                logged.Select(p => p.Loss).ToArray());
            line.LegendText = "logged loss";
            line.LineWidth = 1.5f;
        }

        if (means.Length > 0)
        {
            var markers = plot.Add.ScatterPoints(
                means.Select(e => (double)e.EndStep).ToArray(),
                means.Select(e => e.MeanLoss).ToArray());
            markers.LegendText = "epoch mean loss";
            markers.MarkerSize = 9;
            markers.MarkerShape = MarkerShape.FilledCircle;
        }

        if (logged.Length == 0 && means.Length == 0)
        {
            plot.Axes.SetLimits(0, 1, 0, 1);
            NoData(plot);
        }
        else
        {
            plot.ShowLegend(Alignment.UpperRight);
        }

        return plot;
    }

    private static Plot MetricPlot(IReadOnlyList<EpochPoint> epochs, string metric)
    {
        var plot = NewPlot();
        var label = metric.Replace('_', ' ');
        plot.Title(char.ToUpperInvariant(label[0]) + label[1..]);
        plot.XLabel("epoch");
        plot.YLabel(label);

        var measured = epochs
            .Select(e => (e.Epoch, Value: e.Metrics.TryGetValue(metric, out var v) ? v : double.NaN))
            .Where(e => double.IsFinite(e.Value))
            .OrderBy(e => e.Epoch)
            .ToArray();

        if (measured.Length > 0)
        {
            var series = plot.Add.Scatter(
                measured.Select(e => (double)e.Epoch).ToArray(),
                measured.Select(e => e.Value).ToArray());
            series.MarkerSize = 8;
            series.LineWidth = 1.5f;

            // Half an epoch of room on each side.
            plot.Axes.SetLimitsX(measured[0].Epoch - 0.5, measured[^1].Epoch + 0.5);
        }
        else
        {
            plot.Axes.SetLimitsX(0, 1);
            NoData(plot);
        }

        // Fractions (accuracies) on a fixed 0..1 axis, so runs compare at a glance; anything else scales to its values.
        if (measured.All(e => e.Value is >= 0 and <= 1)) plot.Axes.SetLimitsY(0, 1);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        return plot;
    }

    private static void NoData(Plot plot)
    {
        var note = plot.Add.Annotation("no data", Alignment.MiddleCenter);
        note.LabelFontSize = 20;
    }

    private static void WriteAtomically(string path, byte[] bytes)
    {
        var temp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
