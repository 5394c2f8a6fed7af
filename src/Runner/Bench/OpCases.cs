using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Bench;

/// <summary>
/// The op cases of a ResNet training step: each allocates its operand sets, launches a variant of
/// its op, and compares set 0 with the op's float64 reference (tolerances as in the kernel checks).
/// </summary>
public static class OpCases
{
    public enum ConvPass { Forward, BackwardData, BackwardWeight }

    public static string ConvOp(ConvPass pass) => pass switch
    {
        ConvPass.Forward => "conv2d_fwd",
        ConvPass.BackwardData => "conv2d_bwd_data",
        _ => "conv2d_bwd_weight",
    };

    /// <summary>Forward (x, w -> y), backward-data (dy, w -> dx) or backward-weight (x, dy -> dw).</summary>
    public sealed class Conv : OpCase<ConvLauncher>
    {
        private readonly Conv2dShape _s;
        private readonly ConvPass _pass;
        private readonly float[] _a0, _b0;
        private readonly ArrayView<float>[] _a, _b, _out;
        private double[] _expected = [];

        public Conv(Device dev, Random rng, Conv2dShape s, ConvPass pass, int sets)
            : base(dev, rng, ConvOp(pass), s.ToString(), OpCost.Conv2d(s), gemm: true, sets)
        {
            _s = s;
            _pass = pass;
            long x = s.InputLength, w = s.WeightLength, y = s.OutputLength;
            var (aLen, bLen, outLen) = pass switch
            {
                ConvPass.Forward => (x, w, y),
                ConvPass.BackwardData => (y, w, x),
                _ => (x, y, w),
            };
            _a0 = Rand(aLen);
            _b0 = Rand(bLen);
            _a = PerSet(_a0, () => Rand(aLen));
            _b = PerSet(_b0, () => Rand(bLen));
            _out = Outputs<float>(outLen);
        }

        public override void Launch(ConvLauncher launcher, int set) => launcher(Dev, _a[set], _b[set], _out[set], _s);

        protected override void Reset() => Poison(_out[0]);

        protected override void ComputeReference() => _expected = _pass switch
        {
            ConvPass.Forward => Conv2d.Reference.Forward(D(_a0), D(_b0), _s),
            ConvPass.BackwardData => Conv2d.Reference.BackwardData(D(_a0), D(_b0), _s),
            _ => Conv2d.Reference.BackwardWeight(D(_a0), D(_b0), _s),
        };

        // Sums of C·R·S (K·R·S, N·OH·OW) fp32 terms: an absolute floor that grows with their count
        // (for TF32 variants, with its square root: Conv2dTf32.Tolerance).
        protected override double Compare()
        {
            long terms = _pass switch
            {
                ConvPass.Forward => (long)_s.C * _s.R * _s.S,
                ConvPass.BackwardData => (long)_s.K * _s.R * _s.S,
                _ => (long)_s.N * _s.OutH * _s.OutW,
            };
            if (CheckPrecision == Precision.Tf32)
            {
                var (rtol, atol) = Conv2dTf32.Tolerance(terms);
                return Error(_expected, _out[0], rtol, atol);
            }
            return Error(_expected, _out[0], atol: Math.Max(1e-5, 1e-6 * terms));
        }
    }

    /// <summary>
    /// Training forward: batch statistics, running-statistics update, normalise; with <c>relu</c>, the
    /// bn -> relu pair (y = max(0, bn(x))), whose variants are the fused op and bn then relu.
    /// </summary>
    public sealed class BatchNormForward : OpCase<BatchNormForwardLauncher>
    {
        private readonly BatchNormShape _s;
        private readonly bool _relu;
        private readonly float[] _x0, _g, _b, _rm, _rv;
        private readonly ArrayView<float>[] _x, _y, _mean, _inv, _runMean, _runVar;
        private readonly ArrayView<float> _gamma, _beta;
        private BatchNorm2d.Reference.TrainResult? _expected;

        public BatchNormForward(Device dev, Random rng, BatchNormShape s, int sets, bool relu = false)
            : base(dev, rng, relu ? "batchnorm_relu_fwd_train" : "batchnorm_fwd_train", s.ToString(),
                relu ? OpCost.BatchNormReluTrain(s.Length) : OpCost.BatchNormTrain(s.Length), gemm: false, sets)
        {
            _s = s;
            _relu = relu;
            _x0 = Rand(s.Length, 2, 5);
            _g = Rand(s.C, 0.5f, 1.5f);
            _b = Rand(s.C);
            _rm = Rand(s.C);
            _rv = Rand(s.C, 0.5f, 2);
            _x = PerSet(_x0, () => Rand(s.Length, 2, 5));
            _gamma = Upload(_g);
            _beta = Upload(_b);
            _runMean = PerSet(_rm, () => Rand(s.C));
            _runVar = PerSet(_rv, () => Rand(s.C, 0.5f, 2));
            _y = Outputs<float>(s.Length);
            _mean = Outputs<float>(s.C);
            _inv = Outputs<float>(s.C);
        }

        public override void Launch(BatchNormForwardLauncher launcher, int set)
            => launcher(Dev, _x[set], _gamma, _beta, _y[set], _mean[set], _inv[set], _runMean[set], _runVar[set], _s.N, _s.C, _s.HW, 0.1f, 1e-5f);

        protected override void Reset()
        {
            Restore(_runMean[0], _rm);
            Restore(_runVar[0], _rv);
            Poison(_y[0], _mean[0], _inv[0]);
        }

        protected override void ComputeReference() => _expected = _relu
            ? BatchNorm2d.Reference.ForwardTrainRelu(D(_x0), D(_g), D(_b), D(_rm), D(_rv), _s.N, _s.C, _s.HW)
            : BatchNorm2d.Reference.ForwardTrain(D(_x0), D(_g), D(_b), D(_rm), D(_rv), _s.N, _s.C, _s.HW);

        protected override double Compare() => BatchNormTrainError(_expected!, _x0, _g, _b, _y[0], _mean[0], _inv[0], _runMean[0], _runVar[0],
            _s.N, _s.C, _s.HW, z => _relu ? Relu.Reference.Forward(z) : z);
    }

    /// <summary>Training backward: dx, dgamma, dbeta from x, dy and the saved statistics.</summary>
    public sealed class BatchNormBackward : OpCase<BatchNormBackwardLauncher>
    {
        private readonly BatchNormShape _s;
        private readonly float[] _x0, _dy0, _g;
        private readonly double[] _mean0, _inv0;
        private readonly ArrayView<float>[] _x, _dy, _mean, _inv, _dx, _dg, _db;
        private readonly ArrayView<float> _gamma;
        private BatchNorm2d.Reference.BackwardResult? _expected;

        public BatchNormBackward(Device dev, Random rng, BatchNormShape s, int sets)
            : base(dev, rng, "batchnorm_bwd", s.ToString(), OpCost.BatchNormBackward(s.Length), gemm: false, sets)
        {
            _s = s;
            _x0 = Rand(s.Length, 2, 5);
            _dy0 = Rand(s.Length);
            _g = Rand(s.C, 0.5f, 1.5f);
            // The saved statistics are the forward's, in float as the forward kernel stores them.
            var fwd = BatchNorm2d.Reference.ForwardTrain(D(_x0), D(_g), new double[s.C], new double[s.C], Enumerable.Repeat(1.0, s.C).ToArray(), s.N, s.C, s.HW);
            float[] mean = Array.ConvertAll(fwd.SaveMean, v => (float)v), inv = Array.ConvertAll(fwd.SaveInvStd, v => (float)v);
            _mean0 = D(mean);
            _inv0 = D(inv);
            _x = PerSet(_x0, () => Rand(s.Length, 2, 5));
            _dy = PerSet(_dy0, () => Rand(s.Length));
            _gamma = Upload(_g);
            _mean = PerSet(mean, () => mean);
            _inv = PerSet(inv, () => inv);
            _dx = Outputs<float>(s.Length);
            _dg = Outputs<float>(s.C);
            _db = Outputs<float>(s.C);
        }

        public override void Launch(BatchNormBackwardLauncher launcher, int set)
            => launcher(Dev, _x[set], _dy[set], _gamma, _mean[set], _inv[set], _dx[set], _dg[set], _db[set], _s.N, _s.C, _s.HW);

        protected override void Reset() => Poison(_dx[0], _dg[0], _db[0]);

        protected override void ComputeReference()
            => _expected = BatchNorm2d.Reference.Backward(D(_x0), D(_dy0), D(_g), _mean0, _inv0, _s.N, _s.C, _s.HW);

        protected override double Compare()
        {
            double sums = 1e-5 + 1e-7 * _s.N * _s.HW;
            return new[] { Error(_expected!.Dx, _dx[0]), Error(_expected.Dgamma, _dg[0], atol: sums), Error(_expected.Dbeta, _db[0], atol: sums) }.Max();
        }
    }

    /// <summary>
    /// Backward of the bn -> relu pair: dx, dgamma, dbeta from x, the pair's output y, dy and the saved
    /// statistics. Set 0's y is the forward's (float); the timing sets use random y, which masks about
    /// half of dy as real outputs do. A variant may mask dy in place (bn then relu does): masking again
    /// with the same y changes nothing, so reruns see the same operands.
    /// </summary>
    public sealed class BatchNormReluBackward : OpCase<BatchNormReluBackwardLauncher>
    {
        private readonly BatchNormShape _s;
        private readonly float[] _x0, _y0, _dy0, _g;
        private readonly double[] _mean0, _inv0;
        private readonly ArrayView<float>[] _x, _y, _dy, _mean, _inv, _dx, _dg, _db;
        private readonly ArrayView<float> _gamma;
        private BatchNorm2d.Reference.BackwardResult? _expected;

        public BatchNormReluBackward(Device dev, Random rng, BatchNormShape s, int sets)
            : base(dev, rng, "batchnorm_relu_bwd", s.ToString(), OpCost.BatchNormReluBackward(s.Length), gemm: false, sets)
        {
            _s = s;
            _x0 = Rand(s.Length, 2, 5);
            _dy0 = Rand(s.Length);
            _g = Rand(s.C, 0.5f, 1.5f);
            var fwd = BatchNorm2d.Reference.ForwardTrainRelu(D(_x0), D(_g), D(Rand(s.C)), new double[s.C], Enumerable.Repeat(1.0, s.C).ToArray(), s.N, s.C, s.HW);
            _y0 = Array.ConvertAll(fwd.Y, v => (float)v);
            float[] mean = Array.ConvertAll(fwd.SaveMean, v => (float)v), inv = Array.ConvertAll(fwd.SaveInvStd, v => (float)v);
            _mean0 = D(mean);
            _inv0 = D(inv);
            _x = PerSet(_x0, () => Rand(s.Length, 2, 5));
            _y = PerSet(_y0, () => Rand(s.Length));
            _dy = PerSet(_dy0, () => Rand(s.Length));
            _gamma = Upload(_g);
            _mean = PerSet(mean, () => mean);
            _inv = PerSet(inv, () => inv);
            _dx = Outputs<float>(s.Length);
            _dg = Outputs<float>(s.C);
            _db = Outputs<float>(s.C);
        }

        public override void Launch(BatchNormReluBackwardLauncher launcher, int set)
            => launcher(Dev, _x[set], _y[set], _dy[set], _gamma, _mean[set], _inv[set], _dx[set], _dg[set], _db[set], _s.N, _s.C, _s.HW);

        protected override void Reset() => Poison(_dx[0], _dg[0], _db[0]);

        protected override void ComputeReference()
            => _expected = BatchNorm2d.Reference.BackwardRelu(D(_x0), D(_y0), D(_dy0), D(_g), _mean0, _inv0, _s.N, _s.C, _s.HW);

        protected override double Compare()
        {
            double sums = 1e-5 + 1e-7 * _s.N * _s.HW;
            return new[] { Error(_expected!.Dx, _dx[0]), Error(_expected.Dgamma, _dg[0], atol: sums), Error(_expected.Dbeta, _db[0], atol: sums) }.Max();
        }
    }

    /// <summary>
    /// Training forward of a BasicBlock's tail, y = relu(bn(x) + identity): batch statistics, running-statistics
    /// update and the fused output. identity lies in [-1, 1], so the ReLU clips a good part of y.
    /// </summary>
    public sealed class BatchNormAddReluForward : OpCase<BatchNormAddReluForwardLauncher>
    {
        private readonly BatchNormShape _s;
        private readonly float[] _x0, _id0, _g, _b, _rm, _rv;
        private readonly ArrayView<float>[] _x, _id, _y, _mean, _inv, _runMean, _runVar;
        private readonly ArrayView<float> _gamma, _beta;
        private BatchNorm2d.Reference.TrainResult? _expected;

        public BatchNormAddReluForward(Device dev, Random rng, BatchNormShape s, int sets)
            : base(dev, rng, "batchnorm_add_relu_fwd_train", s.ToString(), OpCost.BatchNormAddReluTrain(s.Length), gemm: false, sets)
        {
            _s = s;
            _x0 = Rand(s.Length, 2, 5);
            _id0 = Rand(s.Length);
            _g = Rand(s.C, 0.5f, 1.5f);
            _b = Rand(s.C);
            _rm = Rand(s.C);
            _rv = Rand(s.C, 0.5f, 2);
            _x = PerSet(_x0, () => Rand(s.Length, 2, 5));
            _id = PerSet(_id0, () => Rand(s.Length));
            _gamma = Upload(_g);
            _beta = Upload(_b);
            _runMean = PerSet(_rm, () => Rand(s.C));
            _runVar = PerSet(_rv, () => Rand(s.C, 0.5f, 2));
            _y = Outputs<float>(s.Length);
            _mean = Outputs<float>(s.C);
            _inv = Outputs<float>(s.C);
        }

        public override void Launch(BatchNormAddReluForwardLauncher launcher, int set)
            => launcher(Dev, _x[set], _id[set], _gamma, _beta, _y[set], _mean[set], _inv[set], _runMean[set], _runVar[set], _s.N, _s.C, _s.HW, 0.1f, 1e-5f);

        protected override void Reset()
        {
            Restore(_runMean[0], _rm);
            Restore(_runVar[0], _rv);
            Poison(_y[0], _mean[0], _inv[0]);
        }

        protected override void ComputeReference()
            => _expected = BatchNorm2d.Reference.ForwardTrainAddRelu(D(_x0), D(_id0), D(_g), D(_b), D(_rm), D(_rv), _s.N, _s.C, _s.HW);

        protected override double Compare() => BatchNormTrainError(_expected!, _x0, _g, _b, _y[0], _mean[0], _inv[0], _runMean[0], _runVar[0],
            _s.N, _s.C, _s.HW, z => Relu.Reference.Forward(Elementwise.Reference.Add(z, D(_id0))));
    }

    /// <summary>
    /// Backward of a BasicBlock's tail: dx, d(identity), dgamma, dbeta from x, the output y, dy and the saved
    /// statistics. Set 0's y is the forward's (float); the timing sets use random y, which masks about half
    /// of dy as real outputs do. dy is not modified (d(identity) has its own buffer).
    /// </summary>
    public sealed class BatchNormAddReluBackward : OpCase<BatchNormAddReluBackwardLauncher>
    {
        private readonly BatchNormShape _s;
        private readonly float[] _x0, _y0, _dy0, _g;
        private readonly double[] _mean0, _inv0;
        private readonly ArrayView<float>[] _x, _y, _dy, _mean, _inv, _dx, _di, _dg, _db;
        private readonly ArrayView<float> _gamma;
        private BatchNorm2d.Reference.AddReluBackwardResult? _expected;

        public BatchNormAddReluBackward(Device dev, Random rng, BatchNormShape s, int sets)
            : base(dev, rng, "batchnorm_add_relu_bwd", s.ToString(), OpCost.BatchNormAddReluBackward(s.Length), gemm: false, sets)
        {
            _s = s;
            _x0 = Rand(s.Length, 2, 5);
            _dy0 = Rand(s.Length);
            _g = Rand(s.C, 0.5f, 1.5f);
            var fwd = BatchNorm2d.Reference.ForwardTrainAddRelu(D(_x0), D(Rand(s.Length)), D(_g), D(Rand(s.C)), new double[s.C],
                Enumerable.Repeat(1.0, s.C).ToArray(), s.N, s.C, s.HW);
            _y0 = Array.ConvertAll(fwd.Y, v => (float)v);
            float[] mean = Array.ConvertAll(fwd.SaveMean, v => (float)v), inv = Array.ConvertAll(fwd.SaveInvStd, v => (float)v);
            _mean0 = D(mean);
            _inv0 = D(inv);
            _x = PerSet(_x0, () => Rand(s.Length, 2, 5));
            _y = PerSet(_y0, () => Rand(s.Length));
            _dy = PerSet(_dy0, () => Rand(s.Length));
            _gamma = Upload(_g);
            _mean = PerSet(mean, () => mean);
            _inv = PerSet(inv, () => inv);
            _dx = Outputs<float>(s.Length);
            _di = Outputs<float>(s.Length);
            _dg = Outputs<float>(s.C);
            _db = Outputs<float>(s.C);
        }

        public override void Launch(BatchNormAddReluBackwardLauncher launcher, int set)
            => launcher(Dev, _x[set], _y[set], _dy[set], _gamma, _mean[set], _inv[set], _dx[set], _di[set], _dg[set], _db[set], _s.N, _s.C, _s.HW);

        protected override void Reset() => Poison(_dx[0], _di[0], _dg[0], _db[0]);

        protected override void ComputeReference()
            => _expected = BatchNorm2d.Reference.BackwardAddRelu(D(_x0), D(_y0), D(_dy0), D(_g), _mean0, _inv0, _s.N, _s.C, _s.HW);

        protected override double Compare()
        {
            double sums = 1e-5 + 1e-7 * _s.N * _s.HW;
            return new[]
            {
                Error(_expected!.Dx, _dx[0]), Error(_expected.Didentity, _di[0]), Error(_expected.Dgamma, _dg[0], atol: sums), Error(_expected.Dbeta, _db[0], atol: sums),
            }.Max();
        }
    }

    /// <summary>An element-wise op x -> y (ReLU forward).</summary>
    public sealed class Unary : OpCase<UnaryLauncher>
    {
        private readonly float[] _x0;
        private readonly ArrayView<float>[] _x, _y;
        private readonly Func<double[], double[]> _reference;
        private double[] _expected = [];

        public Unary(Device dev, Random rng, string op, long n, Cost cost, Func<double[], double[]> reference, int sets)
            : base(dev, rng, op, $"n={n}", cost, gemm: false, sets)
        {
            _reference = reference;
            _x0 = Rand(n);
            _x = PerSet(_x0, () => Rand(n));
            _y = Outputs<float>(n);
        }

        public override void Launch(UnaryLauncher launcher, int set) => launcher(Dev, _x[set], _y[set]);
        protected override void Reset() => Poison(_y[0]);
        protected override void ComputeReference() => _expected = _reference(D(_x0));
        protected override double Compare() => Error(_expected, _y[0]);
    }

    /// <summary>An element-wise op a, b -> y (ReLU backward from y and dy, residual add).</summary>
    public sealed class Binary : OpCase<BinaryLauncher>
    {
        private readonly float[] _a0, _b0;
        private readonly ArrayView<float>[] _a, _b, _y;
        private readonly Func<double[], double[], double[]> _reference;
        private double[] _expected = [];

        public Binary(Device dev, Random rng, string op, long n, Cost cost, Func<double[], double[], double[]> reference, int sets)
            : base(dev, rng, op, $"n={n}", cost, gemm: false, sets)
        {
            _reference = reference;
            _a0 = Rand(n);
            _b0 = Rand(n);
            _a = PerSet(_a0, () => Rand(n));
            _b = PerSet(_b0, () => Rand(n));
            _y = Outputs<float>(n);
        }

        public override void Launch(BinaryLauncher launcher, int set) => launcher(Dev, _a[set], _b[set], _y[set]);
        protected override void Reset() => Poison(_y[0]);
        protected override void ComputeReference() => _expected = _reference(D(_a0), D(_b0));
        protected override double Compare() => Error(_expected, _y[0]);
    }

    public sealed class MaxPoolForward : OpCase<MaxPoolForwardLauncher>
    {
        private readonly Pool2dShape _s;
        private readonly float[] _x0;
        private readonly ArrayView<float>[] _x, _y;
        private readonly ArrayView<int>[] _arg;
        private double[] _expected = [];

        public MaxPoolForward(Device dev, Random rng, Pool2dShape s, int sets)
            : base(dev, rng, "maxpool_fwd", s.ToString(), OpCost.MaxPoolForward(s), gemm: false, sets)
        {
            _s = s;
            _x0 = Rand(s.InputLength);
            _x = PerSet(_x0, () => Rand(s.InputLength));
            _y = Outputs<float>(s.OutputLength);
            _arg = Outputs<int>(s.OutputLength);
        }

        public override void Launch(MaxPoolForwardLauncher launcher, int set) => launcher(Dev, _x[set], _y[set], _arg[set], _s);
        protected override void Reset() => Poison(_y[0]);
        protected override void ComputeReference() => _expected = MaxPool2d.Reference.Forward(D(_x0), _s).Y;
        protected override double Compare() => Error(_expected, _y[0]);
    }

    /// <summary>dy scattered back through the argmax of a forward over random inputs.</summary>
    public sealed class MaxPoolBackward : OpCase<MaxPoolBackwardLauncher>
    {
        private readonly Pool2dShape _s;
        private readonly float[] _dy0;
        private readonly int[] _arg0;
        private readonly ArrayView<float>[] _dy, _dx;
        private readonly ArrayView<int>[] _arg;
        private double[] _expected = [];

        public MaxPoolBackward(Device dev, Random rng, Pool2dShape s, int sets)
            : base(dev, rng, "maxpool_bwd", s.ToString(), OpCost.MaxPoolBackward(s), gemm: false, sets)
        {
            _s = s;
            _dy0 = Rand(s.OutputLength);
            _arg0 = MaxPool2d.Reference.Forward(D(Rand(s.InputLength)), s).Argmax;
            _dy = PerSet(_dy0, () => Rand(s.OutputLength));
            _arg = PerSet(_arg0, () => MaxPool2d.Reference.Forward(D(Rand(s.InputLength)), s).Argmax);
            _dx = Outputs<float>(s.InputLength);
        }

        public override void Launch(MaxPoolBackwardLauncher launcher, int set) => launcher(Dev, _dy[set], _arg[set], _dx[set], _s);
        protected override void Reset() => Poison(_dx[0]);
        protected override void ComputeReference() => _expected = MaxPool2d.Reference.Backward(D(_dy0), _arg0, _s);
        protected override double Compare() => Error(_expected, _dx[0]);
    }

    /// <summary>Global average pool forward ([nc, hw] -> [nc]) or backward ([nc] -> [nc, hw]).</summary>
    public sealed class AvgPool : OpCase<AvgPoolLauncher>
    {
        private readonly int _nc, _hw;
        private readonly bool _forward;
        private readonly float[] _in0;
        private readonly ArrayView<float>[] _in, _out;
        private double[] _expected = [];

        public AvgPool(Device dev, Random rng, int nc, int hw, bool forward, int sets)
            : base(dev, rng, forward ? "avgpool_fwd" : "avgpool_bwd", $"nc={nc} hw={hw}", OpCost.AvgPool(nc, hw), gemm: false, sets)
        {
            _nc = nc;
            _hw = hw;
            _forward = forward;
            long inLen = forward ? (long)nc * hw : nc, outLen = forward ? nc : (long)nc * hw;
            _in0 = Rand(inLen);
            _in = PerSet(_in0, () => Rand(inLen));
            _out = Outputs<float>(outLen);
        }

        public override void Launch(AvgPoolLauncher launcher, int set) => launcher(Dev, _in[set], _out[set], _nc, _hw);
        protected override void Reset() => Poison(_out[0]);
        protected override void ComputeReference()
            => _expected = _forward ? AdaptiveAvgPool.Reference.Forward(D(_in0), _nc, _hw) : AdaptiveAvgPool.Reference.Backward(D(_in0), _nc, _hw);
        protected override double Compare() => Error(_expected, _out[0]);
    }

    public sealed class LinearForward : OpCase<LinearForwardLauncher>
    {
        private readonly LinearShape _s;
        private readonly float[] _x0, _w, _b;
        private readonly ArrayView<float>[] _x, _y;
        private readonly ArrayView<float> _weight, _bias;
        private double[] _expected = [];

        public LinearForward(Device dev, Random rng, LinearShape s, int sets)
            : base(dev, rng, "linear_fwd", s.ToString(), OpCost.LinearForward(s.N, s.InF, s.OutF), gemm: true, sets)
        {
            _s = s;
            _x0 = Rand((long)s.N * s.InF);
            _w = Rand((long)s.OutF * s.InF);
            _b = Rand(s.OutF);
            _x = PerSet(_x0, () => Rand((long)s.N * s.InF));
            _weight = Upload(_w);
            _bias = Upload(_b);
            _y = Outputs<float>((long)s.N * s.OutF);
        }

        public override void Launch(LinearForwardLauncher launcher, int set) => launcher(Dev, _x[set], _weight, _bias, _y[set], _s.N, _s.InF, _s.OutF);
        protected override void Reset() => Poison(_y[0]);
        protected override void ComputeReference() => _expected = Engine.Kernels.Linear.Reference.Forward(D(_x0), D(_w), D(_b), _s.N, _s.InF, _s.OutF);
        protected override double Compare() => Error(_expected, _y[0], atol: Math.Max(1e-5, 1e-6 * Math.Max(_s.N, _s.InF)));
    }

    public sealed class LinearBackward : OpCase<LinearBackwardLauncher>
    {
        private readonly LinearShape _s;
        private readonly float[] _x0, _w, _dy0;
        private readonly ArrayView<float>[] _x, _dy, _dx, _dw, _db;
        private readonly ArrayView<float> _weight;
        private (double[] Dx, double[] Dw, double[] Db) _expected;

        public LinearBackward(Device dev, Random rng, LinearShape s, int sets)
            : base(dev, rng, "linear_bwd", s.ToString(), OpCost.LinearBackward(s.N, s.InF, s.OutF), gemm: true, sets)
        {
            _s = s;
            _x0 = Rand((long)s.N * s.InF);
            _w = Rand((long)s.OutF * s.InF);
            _dy0 = Rand((long)s.N * s.OutF);
            _x = PerSet(_x0, () => Rand((long)s.N * s.InF));
            _dy = PerSet(_dy0, () => Rand((long)s.N * s.OutF));
            _weight = Upload(_w);
            _dx = Outputs<float>((long)s.N * s.InF);
            _dw = Outputs<float>((long)s.OutF * s.InF);
            _db = Outputs<float>(s.OutF);
        }

        public override void Launch(LinearBackwardLauncher launcher, int set)
            => launcher(Dev, _x[set], _weight, _dy[set], _dx[set], _dw[set], _db[set], _s.N, _s.InF, _s.OutF);
        protected override void Reset() => Poison(_dx[0], _dw[0], _db[0]);
        protected override void ComputeReference() => _expected = Engine.Kernels.Linear.Reference.Backward(D(_x0), D(_w), D(_dy0), _s.N, _s.InF, _s.OutF);

        protected override double Compare()
        {
            double atol = Math.Max(1e-5, 1e-6 * Math.Max(_s.N, _s.InF));
            return new[] { Error(_expected.Dx, _dx[0], atol: atol), Error(_expected.Dw, _dw[0], atol: atol), Error(_expected.Db, _db[0], atol: atol) }.Max();
        }
    }

    /// <summary>Fused softmax + cross-entropy (mean) forward: probabilities, loss and correct count.</summary>
    public sealed class LossForward : OpCase<LossForwardLauncher>
    {
        private readonly int _n, _classes;
        private readonly float[] _logits0;
        private readonly int[] _labels0;
        private readonly ArrayView<float>[] _logits, _probs, _loss;
        private readonly ArrayView<int>[] _labels, _correct;
        private (double[] Probs, double Loss, int Correct) _expected;

        public LossForward(Device dev, Random rng, int n, int classes, int sets)
            : base(dev, rng, "softmax_xent_fwd", $"n={n} classes={classes}", OpCost.SoftmaxCrossEntropy(n, classes), gemm: false, sets)
        {
            _n = n;
            _classes = classes;
            _logits0 = Rand((long)n * classes, -5, 5);
            _labels0 = Labels(rng, n, classes);
            _logits = PerSet(_logits0, () => Rand((long)n * classes, -5, 5));
            _labels = PerSet(_labels0, () => Labels(rng, n, classes));
            _probs = Outputs<float>((long)n * classes);
            _loss = Outputs<float>(1);
            _correct = Outputs<int>(1);
        }

        public override void Launch(LossForwardLauncher launcher, int set)
            => launcher(Dev, _logits[set], _labels[set], _probs[set], _loss[set], _correct[set], _n, _classes);

        protected override void Reset()
        {
            Poison(_probs[0], _loss[0]);
            _correct[0].CopyFromCPU(Dev.Stream, new[] { -1 });
        }

        protected override void ComputeReference() => _expected = SoftmaxCrossEntropy.Reference.Forward(D(_logits0), _labels0, _n, _classes);

        protected override double Compare()
        {
            int correct = Dev.Download(_correct[0])[0];
            double count = correct == _expected.Correct ? 0 : double.PositiveInfinity;
            return new[] { Error([_expected.Loss], _loss[0]), Error(_expected.Probs, _probs[0]), count }.Max();
        }
    }

    /// <summary>dlogits = (probs - onehot) / n from the probabilities of a forward over random logits.</summary>
    public sealed class LossBackward : OpCase<LossBackwardLauncher>
    {
        private readonly int _n, _classes;
        private readonly double[] _probs0;
        private readonly int[] _labels0;
        private readonly ArrayView<float>[] _probs, _dlogits;
        private readonly ArrayView<int>[] _labels;
        private double[] _expected = [];

        public LossBackward(Device dev, Random rng, int n, int classes, int sets)
            : base(dev, rng, "softmax_xent_bwd", $"n={n} classes={classes}", OpCost.SoftmaxCrossEntropy(n, classes), gemm: false, sets)
        {
            _n = n;
            _classes = classes;
            _labels0 = Labels(rng, n, classes);
            float[] probs = Probabilities(n, classes);
            _probs0 = D(probs);
            _probs = PerSet(probs, () => Probabilities(n, classes));
            _labels = PerSet(_labels0, () => Labels(rng, n, classes));
            _dlogits = Outputs<float>((long)n * classes);
        }

        private float[] Probabilities(int n, int classes)
            => Array.ConvertAll(SoftmaxCrossEntropy.Reference.Forward(D(Rand((long)n * classes, -5, 5)), new int[n], n, classes).Probs, v => (float)v);

        public override void Launch(LossBackwardLauncher launcher, int set) => launcher(Dev, _probs[set], _labels[set], _dlogits[set], _n, _classes, 1f / _n);
        protected override void Reset() => Poison(_dlogits[0]);
        protected override void ComputeReference() => _expected = SoftmaxCrossEntropy.Reference.Backward(_probs0, _labels0, _n, _classes, 1.0 / _n);
        protected override double Compare() => Error(_expected, _dlogits[0]);
    }

    /// <summary>A steady-state SGD step (momentum buffer already started) over the model's flat parameters.</summary>
    public sealed class Sgd : OpCase<SgdLauncher>
    {
        private const float Lr = 0.1f, Momentum = 0.9f, WeightDecay = 5e-4f;
        private readonly float[] _p0, _g0, _buf0;
        private readonly ArrayView<float>[] _p, _g, _buf;
        private double[] _expectedP = [], _expectedBuf = [];

        public Sgd(Device dev, Random rng, long parameters, int sets)
            : base(dev, rng, "sgd_step", $"n={parameters}", OpCost.Sgd(parameters), gemm: false, sets)
        {
            _p0 = Rand(parameters);
            _g0 = Rand(parameters);
            _buf0 = Rand(parameters);
            _p = PerSet(_p0, () => Rand(parameters));
            _g = PerSet(_g0, () => Rand(parameters));
            _buf = PerSet(_buf0, () => Rand(parameters));
        }

        public override void Launch(SgdLauncher launcher, int set) => launcher(Dev, _p[set], _g[set], _buf[set], Lr, Momentum, WeightDecay, firstStep: false);

        protected override void Reset()
        {
            Restore(_p[0], _p0);
            Restore(_buf[0], _buf0);
        }

        protected override void ComputeReference()
        {
            _expectedP = D(_p0);
            _expectedBuf = D(_buf0);
            Engine.Kernels.Sgd.Reference.Step(_expectedP, D(_g0), _expectedBuf, Lr, Momentum, WeightDecay, firstStep: false);
        }

        protected override double Compare() => Math.Max(Error(_expectedP, _p[0]), Error(_expectedBuf, _buf[0]));
    }

    /// <summary>Random crop (zero padding), horizontal flip and normalisation of uint8 images into fp32.</summary>
    public sealed class Augment : OpCase<AugmentLauncher>
    {
        private static readonly float[] Mean = [0.4914f, 0.4822f, 0.4465f], Std = [0.2470f, 0.2435f, 0.2616f];
        private readonly AugmentShape _s;
        private readonly byte[] _images0;
        private readonly int[] _crops0, _flips0;
        private readonly float[] _mean, _std;
        private readonly ArrayView<byte>[] _images;
        private readonly ArrayView<int>[] _crops, _flips;
        private readonly ArrayView<float>[] _out;
        private readonly ArrayView<float> _meanView, _stdView;
        private double[] _expected = [];

        public Augment(Device dev, Random rng, AugmentShape s, int sets)
            : base(dev, rng, "augment", s.ToString(), OpCost.Augment(s.Length), gemm: false, sets)
        {
            _s = s;
            _mean = Enumerable.Range(0, s.C).Select(i => Mean[i % Mean.Length]).ToArray();
            _std = Enumerable.Range(0, s.C).Select(i => Std[i % Std.Length]).ToArray();
            _images0 = Bytes(s.Length);
            _crops0 = Ints(2 * s.N, 2 * s.Pad + 1);
            _flips0 = Ints(s.N, 2);
            _images = PerSet(_images0, () => Bytes(s.Length));
            _crops = PerSet(_crops0, () => Ints(2 * s.N, 2 * s.Pad + 1));
            _flips = PerSet(_flips0, () => Ints(s.N, 2));
            _meanView = Upload(_mean);
            _stdView = Upload(_std);
            _out = Outputs<float>(s.Length);
        }

        private byte[] Bytes(long n)
        {
            var b = new byte[n];
            Rng.NextBytes(b);
            return b;
        }

        private int[] Ints(int n, int below) => Enumerable.Range(0, n).Select(_ => Rng.Next(below)).ToArray();

        public override void Launch(AugmentLauncher launcher, int set)
            => launcher(Dev, _images[set], _crops[set], _flips[set], _out[set], _meanView, _stdView, _s.N, _s.C, _s.H, _s.W, _s.Pad);
        protected override void Reset() => Poison(_out[0]);
        protected override void ComputeReference()
            => _expected = Engine.Kernels.Augment.Reference.Apply(_images0, _crops0, _flips0, D(_mean), D(_std), _s.N, _s.C, _s.H, _s.W, _s.Pad);
        protected override double Compare() => Error(_expected, _out[0]);
    }

    private static int[] Labels(Random rng, int n, int classes) => Enumerable.Range(0, n).Select(_ => rng.Next(classes)).ToArray();
}
