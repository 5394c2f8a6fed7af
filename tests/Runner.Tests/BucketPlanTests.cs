using Engine.Runner.Scaling;
using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>DDP's bucket cut, one definition for the reducer and the scaling model.</summary>
public class BucketPlanTests
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public void First_bucket_closes_at_1_MiB_then_at_the_cap()
    {
        // 0.6 + 0.6 MiB reach 1 MiB: bucket 1; then 2 + 2 reach 3: bucket 2; the last 1 MiB is left over.
        long[] bytes = [6 * MiB / 10, 6 * MiB / 10, 2 * MiB, 2 * MiB, MiB];
        var plan = BucketPlan.Cut(bytes, bucketMb: 3);
        Assert.Equal([new PlannedBucket(0, 2, 2 * (6 * MiB / 10)), new PlannedBucket(2, 2, 4 * MiB), new PlannedBucket(4, 1, MiB)], plan);
    }

    [Fact]
    public void A_cap_below_1_MiB_caps_the_first_bucket_too()
    {
        long[] bytes = [MiB / 4, MiB / 4, MiB / 4, MiB / 4];
        var plan = BucketPlan.Cut(bytes, bucketMb: 0.5);
        Assert.Equal([2, 2], plan.Select(b => b.Parameters));
    }

    [Fact]
    public void The_scaling_model_cuts_as_the_reducer_does()
    {
        // A cap of a quarter of a small gradient (below 1 MiB): the reducer caps the first bucket too; the model once did not.
        var model = ModelState.Of(new Engine.Nn.ResNetConfig(Depth: 18, Stem: "cifar", Width: 4));
        double capMb = model.ParameterBytes / 4.0 / MiB;
        var fromModel = ScalingModel.Buckets(model, capMb);
        var fromPlan = BucketPlan.Cut(model.GradientReadyOrder.Select(l => l * sizeof(float)).ToArray(), capMb).Select(b => b.Bytes);
        Assert.Equal(fromPlan, fromModel);
        Assert.True(fromModel.Count >= 3, $"{fromModel.Count} bucket(s) for a cap of a quarter of the gradient");
        Assert.Equal(model.ParameterBytes, fromModel.Sum());
    }

    [Fact]
    public void A_cap_that_is_not_positive_is_refused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => BucketPlan.Cut([4], 0));
}
