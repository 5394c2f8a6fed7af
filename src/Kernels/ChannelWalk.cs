namespace Engine.Kernels;

/// <summary>
/// A thread's walk over one channel of an NCHW tensor: the channel's values k = first, first + step, ...
/// (k = n·hw + j over its N·H·W values) as flat tensor indices (n·C + channel)·hw + j, with one division
/// when the walk starts instead of one per element. A step moves step / hw whole images and step mod hw
/// pixels, and carries into the next image when the pixel passes hw. The reduction kernels of batch norm
/// walk their slice of a channel this way, a group's threads interleaved (step = the group size).
/// </summary>
internal struct ChannelWalk
{
    /// <summary>The flat tensor index of the current value.</summary>
    public int Index;

    private int _pixel;
    private readonly int _hw, _pixelStep, _indexStep, _carry;

    public ChannelWalk(int first, int step, int channel, int channels, int hw, FastDivisor divHw)
    {
        int n = divHw.Divide(first);
        _pixel = first - n * hw;
        Index = (n * channels + channel) * hw + _pixel;
        int images = divHw.Divide(step);
        _pixelStep = step - images * hw;
        _indexStep = images * channels * hw + _pixelStep;
        _carry = (channels - 1) * hw;
        _hw = hw;
    }

    /// <summary>
    /// Moves to the value step further on. Past the channel's last value Index may leave int's range; the
    /// walk's owner stops before reading it.
    /// </summary>
    public void Next()
    {
        Index += _indexStep;
        _pixel += _pixelStep;
        if (_pixel >= _hw)
        {
            _pixel -= _hw;
            Index += _carry;
        }
    }
}
