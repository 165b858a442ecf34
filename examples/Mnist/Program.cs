using ActorTrain.Examples.Mnist;
using ActorTrain.Hosting;

return ActorTrainHost.Run(args, new MnistJob(MnistJob.DefaultDataDirectory()));
