using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Configuration;

namespace ActorTrain.Cluster.Tests;

/// <summary>Configurations and bounded waits shared by the specs. Every system binds to 127.0.0.1, port 0.</summary>
internal static class TestConfig
{
    /// <summary>Long enough for a slow CI machine, short enough that a hang fails the run quickly.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    /// <summary>How long a message that must not arrive is waited for.</summary>
    public static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(150);

    /// <summary><paramref name="hocon"/> over ActorTrain's defaults; in the helpers below, the caller's lines come last and win.</summary>
    public static Config With(string hocon) =>
        ConfigurationFactory.ParseString(hocon + "\nakka.coordinated-shutdown.run-by-clr-shutdown-hook = off")
            .WithFallback(ActorTrainSettings.DefaultConfig());

    /// <summary>No networking: enough for serialization and actors that only need a context.</summary>
    public static Config Local(string hocon = "") => With("akka.actor.provider = local\n" + hocon);

    /// <summary>Remoting without a cluster, as the gradient endpoints need.</summary>
    public static Config Remote(string hocon = "") => With("""
        akka.actor.provider = remote
        akka.remote.dot-netty.tcp.hostname = "127.0.0.1"
        akka.remote.dot-netty.tcp.port = 0

        """ + hocon);

    /// <summary>A cluster member with the seed role, as the coordinator runs on.</summary>
    public static Config Seed(string hocon = "") => With("""
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp.hostname = "127.0.0.1"
        akka.remote.dot-netty.tcp.port = 0
        akka.cluster.roles = ["seed"]

        """ + hocon);

    public static Address AddressOf(ActorSystem system) => ((ExtendedActorSystem)system).Provider.DefaultAddress;
}
