using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Tests.Nccl;

public class NcclErrorTests
{
    [Theory]
    [InlineData(0, "ncclSuccess")]
    [InlineData(1, "ncclUnhandledCudaError")]
    [InlineData(2, "ncclSystemError")]
    [InlineData(3, "ncclInternalError")]
    [InlineData(4, "ncclInvalidArgument")]
    [InlineData(5, "ncclInvalidUsage")]
    [InlineData(6, "ncclRemoteError")]
    [InlineData(7, "ncclInProgress")]
    [InlineData(8, "ncclTimeout")]
    [InlineData(42, "ncclResult 42")]
    public void Result_codes_map_to_the_names_of_nccl_h(int code, string name)
    {
        Assert.Equal(name, NcclResults.Name(code));
    }

    [Fact]
    public void Success_does_not_throw_and_does_not_ask_for_a_description()
    {
        NcclResults.ThrowIfFailed("ncclAllReduce", 0, _ => throw new InvalidOperationException("must not be asked"));
    }

    [Fact]
    public void A_failure_names_the_call_the_code_and_ncclGetErrorString()
    {
        var error = Assert.Throws<NcclException>(() =>
            NcclResults.ThrowIfFailed("ncclCommInitRank", 5, code => code == 5 ? "invalid usage (run with NCCL_DEBUG=WARN for details)" : null));

        Assert.Equal("ncclCommInitRank", error.Call);
        Assert.Equal(5, error.Code);
        Assert.Equal(NcclResult.InvalidUsage, error.Result);
        Assert.Equal("ncclCommInitRank failed: ncclInvalidUsage (5): invalid usage (run with NCCL_DEBUG=WARN for details)", error.Message);
    }

    [Fact]
    public void A_failure_without_a_description_still_names_call_and_code()
    {
        var error = Assert.Throws<NcclException>(() => NcclResults.ThrowIfFailed("ncclGroupEnd", 99, describe: null));

        Assert.Equal("ncclGroupEnd failed: ncclResult 99 (99)", error.Message);
    }

    [Theory]
    [InlineData(21903, "2.19.3")]
    [InlineData(22803, "2.28.3")]
    [InlineData(2708, "2.7.8")]
    public void Nccl_versions_decode_in_both_schemes(int code, string text)
    {
        Assert.Equal(text, NcclLibrary.FormatVersion(code));
    }

    [Theory]
    [InlineData(12040, "12.4")]
    [InlineData(13000, "13.0")]
    [InlineData(11080, "11.8")]
    public void Cuda_versions_decode(int code, string text)
    {
        Assert.Equal(text, CudaRuntime.FormatVersion(code));
    }

    [Fact]
    public void Cuda_failures_name_the_call_the_error_name_and_code()
    {
        var error = new CudaException("cudaGetDeviceCount", CudaErrors.NoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected");

        Assert.Equal("cudaGetDeviceCount failed: cudaErrorNoDevice (100): no CUDA-capable device is detected", error.Message);
        Assert.Equal(100, error.Code);
        Assert.Equal("cudaMalloc failed: cudaError 2 (2)", CudaErrors.Describe("cudaMalloc", 2, null, null));
    }
}
