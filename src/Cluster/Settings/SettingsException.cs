namespace ActorTrain.Cluster.Settings;

/// <summary>A configuration value is missing or invalid. <see cref="Path"/> names the HOCON key.</summary>
public sealed class SettingsException : Exception
{
    public SettingsException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        Path = path;
        Problem = problem;
    }

    public string Path { get; }
    public string Problem { get; }
}
