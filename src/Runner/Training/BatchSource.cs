using Engine.Kernels;
using Engine.Nn;
using Engine.Runner.Data;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// Turns a list of sample indices into a normalised, augmented device batch: the uint8 images and
/// labels are gathered on the host, copied once, and cropped, flipped and normalised by a kernel
/// (torchvision's RandomCrop(32, padding=4), RandomHorizontalFlip, Normalize).
/// </summary>
public sealed class BatchSource : IDisposable
{
    public const int CropPadding = 4;

    private readonly Device _device;
    private readonly ImageDataset _data;
    private readonly int _imageBytes;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _images;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _labels, _crops, _flips;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _x, _mean, _std;
    private readonly byte[] _hostImages;
    private readonly int[] _hostLabels, _hostCrops, _hostFlips;

    public BatchSource(Device device, ImageDataset data, int maxBatch)
    {
        _device = device;
        _data = data;
        MaxBatch = maxBatch;
        _imageBytes = data.Channels * data.Height * data.Width;
        _images = device.Allocate<byte>((long)maxBatch * _imageBytes);
        _labels = device.Allocate<int>(maxBatch);
        _crops = device.Allocate<int>(2L * maxBatch);
        _flips = device.Allocate<int>(maxBatch);
        _x = device.Allocate<float>((long)maxBatch * _imageBytes);
        _mean = device.Upload<float>(data.Mean);
        _std = device.Upload<float>(data.Std);
        _hostImages = new byte[maxBatch * _imageBytes];
        _hostLabels = new int[maxBatch];
        _hostCrops = new int[2 * maxBatch];
        _hostFlips = new int[maxBatch];
    }

    public int MaxBatch { get; }

    /// <summary>Host bytes of images plus labels for a batch of <paramref name="n"/> (what the h2d copy moves).</summary>
    public long BytesPerBatch(int n) => (long)n * (_imageBytes + sizeof(int) * 4);

    /// <summary>
    /// Gathers samples <paramref name="indices"/> and uploads them. With <paramref name="augment"/>, crop
    /// corners and flips come from <paramref name="rng"/> (one draw per sample, in order), so a run is a
    /// pure function of its seed.
    /// </summary>
    public (Tensor X, ArrayView<int> Labels) Load(ReadOnlySpan<int> indices, bool augment, Random? rng, PhaseClock? clock = null)
    {
        int n = indices.Length;
        clock?.Begin("data");
        if (n > MaxBatch) throw new ArgumentException($"Batch of {n} exceeds the source's capacity {MaxBatch}.");
        for (int i = 0; i < n; i++)
        {
            int s = indices[i];
            _data.Images.AsSpan(s * _imageBytes, _imageBytes).CopyTo(_hostImages.AsSpan(i * _imageBytes));
            _hostLabels[i] = _data.Labels[s];
            if (augment)
            {
                _hostCrops[2 * i] = rng!.Next(2 * CropPadding + 1);
                _hostCrops[2 * i + 1] = rng.Next(2 * CropPadding + 1);
                _hostFlips[i] = rng.Next(2);
            }
            else
            {
                _hostCrops[2 * i] = _hostCrops[2 * i + 1] = _hostFlips[i] = 0;
            }
        }
        clock?.Mark("data");
        clock?.Begin("h2d");
        ArrayView<byte> images = ((ArrayView<byte>)_images.View).SubView(0, (long)n * _imageBytes);
        ArrayView<int> labels = ((ArrayView<int>)_labels.View).SubView(0, n);
        ArrayView<int> crops = ((ArrayView<int>)_crops.View).SubView(0, 2L * n);
        ArrayView<int> flips = ((ArrayView<int>)_flips.View).SubView(0, n);
        using (_device.Profile("memcpy_htod", new Cost(0, BytesPerBatch(n))))
        {
            images.CopyFromCPU(_device.Stream, _hostImages.AsSpan(0, n * _imageBytes));
            labels.CopyFromCPU(_device.Stream, _hostLabels.AsSpan(0, n));
            crops.CopyFromCPU(_device.Stream, _hostCrops.AsSpan(0, 2 * n));
            flips.CopyFromCPU(_device.Stream, _hostFlips.AsSpan(0, n));
        }
        var x = new Tensor(((ArrayView<float>)_x.View).SubView(0, (long)n * _imageBytes), new[] { n, _data.Channels, _data.Height, _data.Width });
        Augment.Apply(_device, images, crops, flips, x.View, _mean.View, _std.View, n, _data.Channels, _data.Height, _data.Width, augment ? CropPadding : 0);
        clock?.Mark("h2d", BytesPerBatch(n));
        return (x, labels);
    }

    public void Dispose()
    {
        _images.Dispose();
        _labels.Dispose();
        _crops.Dispose();
        _flips.Dispose();
        _x.Dispose();
        _mean.Dispose();
        _std.Dispose();
    }
}
