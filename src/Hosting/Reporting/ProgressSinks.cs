using Spectre.Console;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.Hosting;

/// <summary>Picks the progress display for this process's console.</summary>
internal static class ProgressSinks
{
    /// <summary>
    /// A live bar when standard output is an interactive ANSI terminal and progress is wanted;
    /// otherwise plain lines on <see cref="Console.Out"/>.
    /// </summary>
    public static IProgressSink ForConsole(bool noProgress)
    {
        var capabilities = AnsiConsole.Profile.Capabilities;
        return UseLive(noProgress, Console.IsOutputRedirected, capabilities.Interactive, capabilities.Ansi)
            ? new LiveProgressSink(AnsiConsole.Console)
            : new PlainProgressSink(Console.Out);
    }

    internal static bool UseLive(bool noProgress, bool outputRedirected, bool interactive, bool ansi) =>
        !noProgress && !outputRedirected && interactive && ansi;
}
