using System.Collections;
using System.Reflection;

namespace ActorTrain.Cluster.Tests.Serialization;

/// <summary>
/// Structural equality for wire messages. Record equality compares arrays by reference, so two
/// equal messages that hold arrays are never <c>Equals</c>; this compares every public property,
/// arrays element by element and floating-point values bit for bit (NaN included).
/// </summary>
internal static class WireAssert
{
    public static void Equal(object? expected, object? actual, string path = "message")
    {
        if (expected is null || actual is null)
        {
            Assert.True(expected is null && actual is null, $"{path}: expected {Show(expected)}, got {Show(actual)}");
            return;
        }

        Assert.True(expected.GetType() == actual.GetType(), $"{path}: expected a {expected.GetType().Name}, got a {actual.GetType().Name}");
        switch (expected)
        {
            case double d:
                Assert.True(BitConverter.DoubleToInt64Bits(d) == BitConverter.DoubleToInt64Bits((double)actual), $"{path}: expected {d:R}, got {(double)actual:R}");
                break;
            case float f:
                Assert.True(BitConverter.SingleToInt32Bits(f) == BitConverter.SingleToInt32Bits((float)actual), $"{path}: expected {f:R}, got {(float)actual:R}");
                break;
            case string or ValueType:
                Assert.True(expected.Equals(actual), $"{path}: expected {Show(expected)}, got {Show(actual)}");
                break;
            case IDictionary map:
                var otherMap = (IDictionary)actual;
                Assert.True(map.Count == otherMap.Count, $"{path}: expected {map.Count} entries, got {otherMap.Count}");
                foreach (DictionaryEntry e in map)
                {
                    Assert.True(otherMap.Contains(e.Key), $"{path}: no entry {e.Key}");
                    Equal(e.Value, otherMap[e.Key], $"{path}[{e.Key}]");
                }
                break;
            case IList list:
                var other = (IList)actual;
                Assert.True(list.Count == other.Count, $"{path}: expected {list.Count} elements, got {other.Count}");
                for (var i = 0; i < list.Count; i++) Equal(list[i], other[i], $"{path}[{i}]");
                break;
            default:
                foreach (var p in Properties(expected.GetType())) Equal(p.GetValue(expected), p.GetValue(actual), $"{path}.{p.Name}");
                break;
        }
    }

    /// <summary>The public data of a message: its readable, non-indexed instance properties.</summary>
    public static IEnumerable<PropertyInfo> Properties(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanRead && p.GetIndexParameters().Length == 0);

    private static string Show(object? value) => value switch
    {
        null => "null",
        string s => $"\"{s}\"",
        _ => value.ToString() ?? "",
    };
}
