using System.Collections;
using System.Reflection;
using ActorTrain.Cluster.Serialization;
using MessagePack;

namespace ActorTrain.Cluster.Tests.Serialization;

public class WireWarmUpSpec
{
    [Fact]
    public void Every_wire_message_type_round_trips_from_its_sample()
    {
        Assert.Empty(WireWarmUp.Run(ActorTrainMessageSerializer.MessageTypes));
    }

    [Fact]
    public void The_warm_up_covers_wire_messages_only_and_starts_with_the_registration()
    {
        Assert.Empty(WireWarmUp.Run());
        Assert.Subset(ActorTrainMessageSerializer.MessageTypes.ToHashSet(), WireWarmUp.RunMessages.ToHashSet());
        Assert.Equal(typeof(ActorTrain.Cluster.Protocol.RegisterNode), WireWarmUp.RunMessages[0]);
    }

    [Fact]
    public void A_sample_sets_every_field_and_fills_every_array_so_nested_formatters_are_reached_too()
    {
        var unset = new List<string>();
        foreach (var type in ActorTrainMessageSerializer.MessageTypes)
            Walk(WireWarmUp.Sample(type, depth: 0)!, type.Name, unset);
        Assert.Empty(unset);
    }

    /// <summary>Every [Key] property of a message object, and of the objects in it, is set; collections hold one element.</summary>
    private static void Walk(object value, string path, List<string> unset)
    {
        foreach (var property in value.GetType().GetProperties().Where(p => p.GetCustomAttribute<KeyAttribute>() is not null))
        {
            var field = $"{path}.{property.Name}";
            switch (property.GetValue(value))
            {
                case null:
                    unset.Add(field);
                    break;
                case string:
                    break;
                case ICollection { Count: 0 }:
                    unset.Add($"{field} (empty)");
                    break;
                case IEnumerable items:
                    foreach (var item in items)
                        if (item?.GetType().GetCustomAttribute<MessagePackObjectAttribute>() is not null) Walk(item, $"{field}[]", unset);
                    break;
                case var nested when nested.GetType().GetCustomAttribute<MessagePackObjectAttribute>() is not null:
                    Walk(nested, field, unset);
                    break;
            }
        }
    }
}
