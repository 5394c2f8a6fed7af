namespace Engine.Kernels.Tests;

/// <summary>Batch norm's per-element channel lookup by multiply-shift equals (i / hw) mod C.</summary>
public class ChannelIndexTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 1)]
    [InlineData(64, 1024)]
    [InlineData(512, 1)]
    [InlineData(7, 49)]
    [InlineData(10, 3)]
    public void Channel_of_every_element_is_i_over_hw_mod_c(int channels, int hw)
    {
        var index = new ChannelIndex(channels, hw);
        for (int i = 0; i < 3 * channels * hw + 5; i++)
        {
            Assert.Equal(i / hw % channels, index.Of(i));
        }
    }

    [Fact]
    public void Large_indices_near_the_top_of_the_int_range_are_exact()
    {
        var rng = new Random(11);
        for (int t = 0; t < 10000; t++)
        {
            int channels = rng.Next(1, 2048), hw = rng.Next(1, 1 << 16), i = rng.Next(int.MaxValue - (1 << 20), int.MaxValue);
            Assert.Equal(i / hw % channels, new ChannelIndex(channels, hw).Of(i));
        }
    }
}
