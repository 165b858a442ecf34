using ActorTrain.Cluster;
using ActorTrain.Examples.TinyLM;
using ActorTrain.Hosting;

// Same subcommands as the MNIST example: seed | worker | local | status.
FortuneCorpus corpus;
try
{
    corpus = FortuneCorpus.Load(TinyLmJob.DefaultCorpusFile());
}
catch (Exception e) when (e is IOException or InvalidDataException or FormatException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return ExitCodes.BadConfiguration;
}
return ActorTrainHost.Run(args, new TinyLmJob(corpus));
