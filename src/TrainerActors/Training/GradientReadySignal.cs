using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Training;

/// <summary>
/// Identity in forward; in backward it calls a callback, then passes the gradient on unchanged.
/// TorchSharp has no tensor or AccumulateGrad hooks, so this custom autograd function is how
/// <see cref="GradientReducer"/> learns during backward that a layer is done: placed on a layer's
/// input, its backward runs once the layer's own backward has produced the gradient of that input.
/// The layer's parameter gradients are accumulated by then, because libtorch's engine runs
/// AccumulateGrad nodes ahead of every other ready node (they carry the highest priority).
/// </summary>
internal sealed class GradientReadySignal : autograd.SingleTensorFunction<GradientReadySignal>
{
    private const string CallbackKey = "callback";

    public override string Name => "ActorTrainGradientReady";

    /// <summary>Wraps <paramref name="input"/>; <paramref name="onBackward"/> runs when its gradient has been computed.</summary>
    public static Tensor Wrap(Tensor input, Action onBackward) => apply(input, onBackward);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        ctx.save_data(CallbackKey, vars[1]);
        // A view, not the input itself: the output must be a tensor of its own for autograd to attach this node.
        return ((Tensor)vars[0]).alias();
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        ((Action)ctx.get_data(CallbackKey))();
        // One gradient per forward argument; the callback is not a tensor, so its slot is null.
        return [grad_output, null!];
    }
}
