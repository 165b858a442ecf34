using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Security;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Configuration;

namespace ActorTrain.Cluster.Hosting;

/// <summary>
/// Asks a running cluster's coordinator for its <see cref="ClusterStatus"/> from outside the
/// cluster: a short-lived ActorSystem with a cluster client that reaches the seed's receptionist
/// (see <see cref="ClusterBootstrap.Start"/>), without joining. With <see cref="TlsSettings"/> on,
/// its remoting runs the same TLS with mutual authentication as the nodes', so its certificate
/// must be signed by the cluster's CA.
/// </summary>
internal static class StatusClient
{
    public const string SystemName = "actortrain-status";

    /// <summary>Where the seed registers its <see cref="StatusService"/> with its receptionist.</summary>
    public const string StatusServicePath = "/user/" + StatusService.Name;

    /// <summary>
    /// The coordinator's status. <paramref name="seedAddress"/> is the seed's address
    /// (<c>akka.tcp://actortrain@host:port</c>; rewritten to <c>akka.ssl.tcp</c> when
    /// <paramref name="tls"/> is on), <paramref name="hostname"/> this machine's address as the seed
    /// can reach it. No answer within <paramref name="timeout"/> throws <see cref="AskTimeoutException"/>;
    /// a refused TLS handshake throws <see cref="StatusTlsException"/>; a certificate problem on this
    /// side is a <see cref="SettingsException"/> naming the key and the file. A cluster with a cluster
    /// secret answers only a client with the same <paramref name="clusterSecret"/> (else no answer).
    /// </summary>
    public static async Task<ClusterStatus> AskAsync(string seedAddress, string hostname, TlsSettings tls, TimeSpan timeout,
        ClusterSecretSettings? clusterSecret = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(seedAddress);
        ArgumentNullException.ThrowIfNull(tls);
        var contact = $"{ContactAddress(seedAddress, tls.Enabled)}/system/receptionist";
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = {{Quote(hostname)}}, port = 0 }
            akka.cluster.client.initial-contacts = [{{Quote(contact)}}]
            akka.loglevel = ERROR
            akka.stdout-loglevel = OFF
            akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
            {{ClusterSecretSettings.Key}} = {{Quote(clusterSecret?.Value ?? "")}}
            """).WithFallback(ActorTrainSettings.DefaultConfig());
        var system = ClusterBootstrap.CreateSystem(SystemName, config, tls);
        try
        {
            var client = system.ActorOf(ClusterClient.Props(ClusterClientSettings.Create(system)), "client");
            var ask = client.Ask<ClusterStatus>(
                new ClusterClient.Send(StatusServicePath, new GetStatus(Guid.NewGuid().ToString("N")), localAffinity: true), timeout);
            // A failed TLS handshake makes Akka shut this system down; say so instead of waiting out the timeout.
            var first = await Task.WhenAny(ask, system.WhenTerminated).ConfigureAwait(false);
            if (first == ask) return await ask.ConfigureAwait(false);
            if (NodeTls.ShutDownByFailedHandshake(system))
                throw new StatusTlsException($"the TLS handshake with {seedAddress} failed: the seed refused this client's certificate, or this client refused the seed's " +
                    $"(both must chain to the CA in {TlsSettings.CaCertificatePathKey}; is TLS on in the cluster?)");
            throw new AskTimeoutException($"the status client stopped before {seedAddress} answered");
        }
        finally
        {
            await system.Terminate().WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
        }
    }

    /// <summary><paramref name="seedAddress"/> in the scheme the client's remoting speaks.</summary>
    public static string ContactAddress(string seedAddress, bool tls) =>
        tls ? NodeTls.TlsAddress(seedAddress) : seedAddress;

    private static string Quote(string value) => NodeTls.Quote(value);
}

/// <summary>The status client's TLS handshake with the seed failed.</summary>
internal sealed class StatusTlsException(string message) : Exception(message);
