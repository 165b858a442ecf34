using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Tests.Reporting;

public sealed class ProgressProtocolTests
{
    public static TheoryData<ProgressEvent> Events() => new()
    {
        new ProgressEvent(ProgressKinds.EpochStart, 1, 10, 0, 70, double.NaN, 0, null),
        new ProgressEvent(ProgressKinds.Step, 3, 10, 40, 70, 0.4321, 1234.5, null),
        new ProgressEvent(ProgressKinds.LossLine, 2, 10, 20, 70, 1.234, 999, "[2,    20] loss: 1.234"),
        new ProgressEvent(ProgressKinds.EpochEnd, 10, 10, 70, 70, 0.12, 0, "epoch 10: test accuracy 0.9312 on 1000 held-out samples"),
        new ProgressEvent(ProgressKinds.Message, int.MaxValue, int.MinValue, long.MaxValue, long.MinValue, double.PositiveInfinity, double.NegativeInfinity, "quotes \" back\\slash\nnew line\ttab · ünïcode ✓ {\"json\": 1}"),
        new ProgressEvent(ProgressKinds.Message, 0, 0, 0, 0, double.Epsilon, double.MaxValue, ""),
    };

    [Theory]
    [MemberData(nameof(Events))]
    public void Round_trips_every_field_on_one_line(ProgressEvent sent)
    {
        var line = ProgressProtocol.Encode(sent);

        Assert.StartsWith(ProgressProtocol.Prefix, line, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', line);
        Assert.DoesNotContain('\r', line);
        Assert.True(ProgressProtocol.TryDecode(line, out var received));
        Assert.Equal(sent, received);
    }

    [Fact]
    public void The_payload_is_json_after_the_prefix()
    {
        var line = ProgressProtocol.Encode(new ProgressEvent(ProgressKinds.Step, 3, 10, 40, 70, 0.5, 100, null));

        Assert.Equal(
            """##actortrain-progress {"kind":"step","epoch":3,"epochs":10,"step":40,"stepsPerEpoch":70,"loss":0.5,"samplesPerSecond":100}""",
            line);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("[1,    20] loss: 2.271")]
    [InlineData("epoch 10: test accuracy 0.9312 on 1000 held-out samples")]
    [InlineData("##actortrain-progress")]
    [InlineData("##actortrain-progress{\"kind\":\"step\"}")]
    [InlineData(" ##actortrain-progress {\"kind\":\"step\"}")]
    [InlineData("##ACTORTRAIN-PROGRESS {\"kind\":\"step\"}")]
    [InlineData("[node0] ##actortrain-progress {\"kind\":\"step\"}")]
    public void Other_lines_are_not_events(string? line)
    {
        Assert.False(ProgressProtocol.TryDecode(line, out var e));
        Assert.Null(e);
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("{")]
    [InlineData("}")]
    [InlineData("null")]
    [InlineData("[]")]
    [InlineData("42")]
    [InlineData("\"step\"")]
    [InlineData("{}")]
    [InlineData("{\"kind\":null}")]
    [InlineData("{\"kind\":\"\"}")]
    [InlineData("{\"kind\":5}")]
    [InlineData("{\"epoch\":1,\"epochs\":2}")]
    [InlineData("{\"kind\":\"step\",\"epoch\":\"three\"}")]
    [InlineData("{\"kind\":\"step\",\"epoch\":1e100}")]
    [InlineData("{\"kind\":\"step\",\"epoch\":1.5}")]
    [InlineData("{\"kind\":\"step\",\"step\":99999999999999999999999}")]
    [InlineData("{\"kind\":\"step\",\"loss\":\"not a number\"}")]
    [InlineData("{\"kind\":\"step\",\"text\":{\"a\":1}}")]
    [InlineData("{\"kind\":\"step\"} trailing")]
    [InlineData("{\"kind\":\"step\",}")]
    [InlineData("{'kind':'step'}")]
    [InlineData("\u0000\u0001\u00ff")]
    public void Malformed_payloads_are_refused_without_throwing(string payload)
    {
        Assert.False(ProgressProtocol.TryDecode(ProgressProtocol.Prefix + payload, out var e));
        Assert.Null(e);
    }

    [Fact]
    public void Deeply_nested_payloads_are_refused_without_throwing()
    {
        var payload = "{\"kind\":\"step\",\"text\":" + new string('[', 10_000) + new string(']', 10_000) + "}";

        Assert.False(ProgressProtocol.TryDecode(ProgressProtocol.Prefix + payload, out _));
    }

    [Fact]
    public void Unknown_fields_and_missing_optional_ones_are_tolerated()
    {
        Assert.True(ProgressProtocol.TryDecode(
            ProgressProtocol.Prefix + """{"kind":"message","text":"hi","addedLater":[1,2]}""",
            out var e));
        Assert.Equal(new ProgressEvent(ProgressKinds.Message, 0, 0, 0, 0, 0, 0, "hi"), e);
    }
}
