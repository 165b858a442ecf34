using ActorTrain.Examples.Mnist;
using ActorTrain.TrainerActors.Hosting;

return ActorTrainHost.Run(args, new MnistJob(MnistJob.DefaultDataDirectory()));
