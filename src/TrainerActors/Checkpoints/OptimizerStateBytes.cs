using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>
/// An optimizer's state as bytes, for the checkpoint's "optimizer" section: the optimizer's type
/// and parameter count, then TorchSharp's own state dictionary (options of every parameter group
/// and per-parameter state such as SGD's momentum buffers).
/// </summary>
internal static class OptimizerStateBytes
{
    private const uint Magic = 0x4F545441; // "ATTO"

    public static byte[] Save(optim.Optimizer optimizer)
    {
        var helper = Supported(optimizer);
        using var scope = torch.NewDisposeScope();
        using var output = new MemoryStream();
        using (var writer = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(Magic);
            writer.Write(optimizer.GetType().FullName!);
            writer.Write(optimizer.parameters().LongCount());
            helper.save_state_dict(writer);
        }
        return output.ToArray();
    }

    /// <summary>Restores the state; <see cref="InvalidDataException"/> when it belongs to another optimizer or is damaged.</summary>
    public static void Load(optim.Optimizer optimizer, byte[] bytes)
    {
        var helper = Supported(optimizer);
        using var input = new MemoryStream(bytes, writable: false);
        using var reader = new BinaryReader(input, Encoding.UTF8, leaveOpen: true);
        string type;
        long parameters;
        try
        {
            if (reader.ReadUInt32() != Magic) throw new InvalidDataException("optimizer state: not an optimizer state section (wrong magic)");
            type = reader.ReadString();
            parameters = reader.ReadInt64();
        }
        catch (EndOfStreamException) { throw new InvalidDataException("optimizer state: truncated"); }
        if (type != optimizer.GetType().FullName)
            throw new InvalidDataException($"optimizer state: saved from {type}, but the optimizer is {optimizer.GetType().FullName}");
        var expected = optimizer.parameters().LongCount();
        if (parameters != expected)
            throw new InvalidDataException($"optimizer state: saved for {parameters} parameters, but the optimizer has {expected}");

        // The loaded state tensors must outlive this call, and any scope the caller has open.
        using var scope = torch.NewDisposeScope();
        try
        {
            helper.load_state_dict(reader);
        }
        catch (Exception e) when (e is not InvalidDataException)
        {
            throw new InvalidDataException($"optimizer state: cannot be loaded into {type} ({e.Message})", e);
        }
        finally
        {
            scope.Detach(scope.DisposablesView.ToList());
        }
        if (input.Position != input.Length)
            throw new InvalidDataException($"optimizer state: {input.Length - input.Position} unexpected bytes after the state");

        var device = optimizer.parameters().FirstOrDefault()?.device;
        if (device is not null && device.type != DeviceType.CPU) helper.to(device);
    }

    private static OptimizerHelper Supported(optim.Optimizer optimizer) =>
        optimizer as OptimizerHelper ?? throw new NotSupportedException(
            $"cannot save or load the state of optimizer {optimizer.GetType().FullName}: only TorchSharp's built-in optimizers expose it");
}
