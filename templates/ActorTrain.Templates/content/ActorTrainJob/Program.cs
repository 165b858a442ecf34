using ActorTrain.Hosting;
using ActorTrainJob;

// seed | worker | local | status: `dotnet run -- local --nodes 2` trains on two node processes here.
return ActorTrainHost.Run(args, new SpiralJob());
