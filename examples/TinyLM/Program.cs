using ActorTrain.Examples.TinyLM;
using ActorTrain.Hosting;

// Same subcommands as the MNIST example: seed | worker | local | status.
var corpus = FortuneCorpus.Load(TinyLmJob.DefaultCorpusFile());
return ActorTrainHost.Run(args, new TinyLmJob(corpus, TinyLmJob.SamplesPerEpochFromEnvironment()));
