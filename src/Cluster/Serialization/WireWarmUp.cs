using System.Collections;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Serialization;

/// <summary>
/// Writes and reads one made-up message of every wire type, so that MessagePack has generated and
/// the JIT has compiled their formatters before the first real message needs them. Without it the
/// first message of each type cost 7 to 150 ms to write or read (the registration most, the world
/// assignment 65 + 29 ms), and those first messages are the ones that start a run: the registration,
/// the world, the first epoch, its completion. A node runs this in the background while it joins.
/// Only the messages of a run without faults are warmed, in the order a run first sends them: the
/// others (regroups, refusals, status) are rare, and warming them too doubled the warm-up's time.
/// </summary>
internal static class WireWarmUp
{
    /// <summary>What every run sends, in the order it first does.</summary>
    public static IReadOnlyList<Type> RunMessages { get; } =
    [
        typeof(RegisterNode), typeof(NodeRegistered), typeof(WorldAssignment), typeof(NodeReady), typeof(HistoryUpdate), typeof(StartEpoch),
        typeof(NodeProgress), typeof(EpochCompleted), typeof(FinishTraining), typeof(NodeFinished), typeof(EndRun),
    ];

    /// <summary>Round-trips a sample of each of <paramref name="types"/> (default: <see cref="RunMessages"/>); returns the types that could not be, with why (none, normally).</summary>
    public static IReadOnlyList<string> Run(IEnumerable<Type>? types = null)
    {
        var problems = new List<string>();
        foreach (var type in types ?? RunMessages)
        {
            try
            {
                var back = ActorTrainMessageSerializer.RoundTrip(Sample(type, depth: 0)!);
                if (back.GetType() != type) problems.Add($"{type.Name}: read back as {back.GetType().Name}");
            }
            catch (Exception e)
            {
                problems.Add($"{type.Name}: {e.GetBaseException().Message}");
            }
        }
        return problems;
    }

    /// <summary>
    /// A value of <paramref name="type"/> with every field set (one element in every array and
    /// dictionary), so that writing it reaches the formatter of every nested type too.
    /// </summary>
    internal static object? Sample(Type type, int depth)
    {
        if (depth > 8) throw new InvalidOperationException($"{type.Name} nests deeper than 8 levels");
        if (type == typeof(string)) return "w";
        if (Nullable.GetUnderlyingType(type) is { } inner) return Sample(inner, depth);
        if (type.IsEnum) return Enum.GetValues(type).GetValue(0);
        if (type.IsPrimitive || type == typeof(decimal)) return Activator.CreateInstance(type);
        if (type.IsArray)
        {
            var array = Array.CreateInstance(type.GetElementType()!, 1);
            array.SetValue(Sample(type.GetElementType()!, depth + 1), 0);
            return array;
        }
        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>))
        {
            var dictionary = (IDictionary)Activator.CreateInstance(type)!;
            var arguments = type.GetGenericArguments();
            dictionary.Add(Sample(arguments[0], depth + 1)!, Sample(arguments[1], depth + 1));
            return dictionary;
        }
        var constructor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault()
            ?? throw new InvalidOperationException($"{type.Name} has no public constructor");
        return constructor.Invoke(constructor.GetParameters().Select(p => Sample(p.ParameterType, depth + 1)).ToArray());
    }
}
