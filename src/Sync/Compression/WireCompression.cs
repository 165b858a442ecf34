namespace ActorTrain.Sync.Compression;

/// <summary>
/// How gradient chunks travel on the cross-node leg of the all-reduce
/// (the node's compression setting). Intra-node collectives always stay float32.
/// </summary>
public enum WireCompression
{
    /// <summary>float32 on the wire: the sum is exact up to float32 addition.</summary>
    None,

    /// <summary>IEEE 754 binary16 (<see cref="System.Half"/>): 11-bit significand, range ±65504.</summary>
    Fp16,

    /// <summary>bfloat16: float32's 8-bit exponent (same range) with an 8-bit significand.</summary>
    Bf16,
}

/// <summary>The names of <see cref="WireCompression"/> values in configuration and in the world's plan.</summary>
internal static class WireCompressionNames
{
    public const string None = "none";
    public const string Fp16 = "fp16";
    public const string Bf16 = "bf16";

    /// <summary>Every name, in the order they are documented.</summary>
    public static IReadOnlyList<string> All { get; } = [None, Fp16, Bf16];

    /// <summary>The value named <paramref name="name"/> (case-insensitive); false for anything else.</summary>
    public static bool TryParse(string? name, out WireCompression compression)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case None: compression = WireCompression.None; return true;
            case Fp16: compression = WireCompression.Fp16; return true;
            case Bf16: compression = WireCompression.Bf16; return true;
            default: compression = WireCompression.None; return false;
        }
    }

    /// <summary>
    /// The value named <paramref name="name"/>; an <see cref="ArgumentException"/> naming the known
    /// values otherwise (e.g. a plan sent by a node of a newer version).
    /// </summary>
    public static WireCompression Parse(string? name) =>
        TryParse(name, out var compression)
            ? compression
            : throw new ArgumentException(
                $"unknown cross-node compression \"{name}\"; expected one of {string.Join(" | ", All)}",
                nameof(name));

    public static string ToName(this WireCompression compression) => compression switch
    {
        WireCompression.None => None,
        WireCompression.Fp16 => Fp16,
        WireCompression.Bf16 => Bf16,
        _ => throw new ArgumentOutOfRangeException(nameof(compression), compression, null),
    };
}
