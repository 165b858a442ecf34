using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ActorTrain.Examples.TinyLM;

/// <summary>The shape of the language model: byte vocabulary, context, width, depth, heads.</summary>
public sealed record TransformerShape(int Vocabulary, int Context, int Width, int Layers, int Heads)
{
    /// <summary>About 5.7 M parameters: a 22.7 MB float32 gradient per step.</summary>
    public static TransformerShape Default { get; } = new(Vocabulary: 256, Context: 64, Width: 256, Layers: 7, Heads: 8);
}

/// <summary>
/// A decoder-only transformer over bytes (GPT's layout, pre-norm): token and position embeddings,
/// blocks of causal self-attention and a 4× MLP, each behind a LayerNorm and added to the residual,
/// a final LayerNorm and a linear head to the byte logits. Input: (batch, time) byte values as
/// int64; output: (batch, time, vocabulary) logits for the byte that follows each position.
/// </summary>
public sealed class Transformer : Module<Tensor, Tensor>
{
    private readonly Embedding tokens;
    private readonly Embedding positions;
    private readonly ModuleList<Block> blocks;
    private readonly LayerNorm norm;
    private readonly Linear head;
    private readonly int _context;

    public Transformer(TransformerShape shape) : base(nameof(Transformer))
    {
        _context = shape.Context;
        tokens = Embedding(shape.Vocabulary, shape.Width);
        positions = Embedding(shape.Context, shape.Width);
        blocks = new ModuleList<Block>(Enumerable.Range(0, shape.Layers).Select(_ => new Block(shape.Width, shape.Heads)).ToArray());
        norm = LayerNorm(shape.Width);
        head = Linear(shape.Width, shape.Vocabulary);
        RegisterComponents();
        InitialiseWeights();
    }

    public long ParameterCount => parameters().Sum(p => p.numel());

    public override Tensor forward(Tensor input)
    {
        var time = input.shape[1];
        if (time > _context) throw new ArgumentException($"the input has {time} positions; the model's context is {_context}", nameof(input));
        using var scope = NewDisposeScope();
        var x = tokens.call(input) + positions.call(arange(time, device: input.device));
        foreach (var block in blocks) x = block.call(x);
        return head.call(norm.call(x)).MoveToOuterDisposeScope();
    }

    // GPT-2's initialisation: N(0, 0.02) weights and zero biases, the projections back into the
    // residual scaled by 1/sqrt(2 × layers) so the residual's variance does not grow with depth.
    private void InitialiseWeights()
    {
        using var _ = no_grad();
        var residualStd = 0.02 / Math.Sqrt(2.0 * blocks.Count);
        foreach (var (name, parameter) in named_parameters())
        {
            if (name.EndsWith("bias", StringComparison.Ordinal)) init.zeros_(parameter);
            else if (name.Contains("norm", StringComparison.Ordinal)) init.ones_(parameter);
            else init.normal_(parameter, 0, name.EndsWith("out.weight", StringComparison.Ordinal) ? residualStd : 0.02);
        }
    }

    /// <summary>One pre-norm transformer block.</summary>
    private sealed class Block : Module<Tensor, Tensor>
    {
        private readonly LayerNorm norm1;
        private readonly CausalSelfAttention attention;
        private readonly LayerNorm norm2;
        private readonly Linear expand;
        private readonly Linear @out;

        public Block(int width, int heads) : base(nameof(Block))
        {
            norm1 = LayerNorm(width);
            attention = new CausalSelfAttention(width, heads);
            norm2 = LayerNorm(width);
            expand = Linear(width, 4 * width);
            @out = Linear(4 * width, width);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            x = x + attention.call(norm1.call(x));
            return x + @out.call(functional.gelu(expand.call(norm2.call(x))));
        }
    }

    /// <summary>Multi-head self-attention in which a position sees only itself and the positions before it.</summary>
    private sealed class CausalSelfAttention : Module<Tensor, Tensor>
    {
        private readonly Linear qkv;
        private readonly Linear @out;
        private readonly int _heads;

        public CausalSelfAttention(int width, int heads) : base(nameof(CausalSelfAttention))
        {
            if (width % heads != 0) throw new ArgumentException($"the width {width} is not a multiple of the {heads} heads");
            _heads = heads;
            qkv = Linear(width, 3 * width);
            @out = Linear(width, width);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            var (batch, time, width) = (x.shape[0], x.shape[1], x.shape[2]);
            // (batch, time, 3 × width) → three (batch, heads, time, width / heads).
            var parts = qkv.call(x).view(batch, time, 3, _heads, width / _heads).permute(2, 0, 3, 1, 4);
            var attended = functional.scaled_dot_product_attention(parts[0], parts[1], parts[2], is_casual: true);
            return @out.call(attended.transpose(1, 2).reshape(batch, time, width));
        }
    }
}
