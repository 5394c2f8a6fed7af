using System.CommandLine;
using Engine.Nn;
using Engine.Runner.Compare;
using Engine.Runner.Scaling;

namespace Engine.Runner.Commands;

/// <summary>
/// <c>engine model</c>: predicts single, DP and DDP step and epoch times on N devices from a
/// single-device epoch time (or a comparison's measured single-device phases), the model's bytes and
/// a link; <c>--seed-check</c> checks it against the seed's table, <c>--from</c> against a comparison.
/// </summary>
internal static class ModelCommand
{
    public static Command Create()
    {
        var defaults = new ScalingSettings();
        var seedCheck = new Option<bool>("--seed-check") { Description = "Predict the seed's setup (ResNet-34, batch 512 per GPU, 2 GPUs, single epoch 6.302 s) and print the error against its DP 12.460 s and DDP 3.282 s." };
        var from = new Option<string?>("--from") { Description = "A comparison's JSON (engine compare --output): its single run's phases are the input; prints predicted vs measured per phase for dp and ddp." };
        var link = new Option<string?>("--link") { Description = "pcie3 | pcie4 | pcie5 | nvlink (effective 12 / 24 / 48 / 300 GB/s), or a rate such as 8mbit: the links between the emulated nodes DDP's ranks ran on (engine compare --emulate-nodes), with DP's copies on pcie4. [default: pcie4; with --from, the comparison's emulated link if it had one]" };
        var bandwidth = new Option<double?>("--bandwidth-gbs") { Description = "Effective link bandwidth per direction, GB/s (overrides the preset's)." };
        var hostBandwidth = new Option<double?>("--host-bandwidth-gbs") { Description = "Host-to-device bandwidth, GB/s (default: the link's; nvlink: 24, PCIe 4.0 x16)." };
        var latency = new Option<double?>("--latency-us") { Description = "Latency per transfer or ring step, microseconds (overrides the preset's)." };
        var p2p = new Option<bool?>("--p2p") { Description = "true | false: devices copy to each other directly; false: through host memory (PCIe presets: false, nvlink: true)." };
        var devices = new Option<int>("--devices") { Description = "N devices (dp) or ranks (ddp).", DefaultValueFactory = _ => defaults.Devices };
        var epoch = new Option<double?>("--single-epoch-seconds") { Description = "Measured single-device epoch time to predict from." };
        var batch = new Option<int>("--batch-size") { Description = "Per device, as in the seed.", DefaultValueFactory = _ => defaults.BatchSize };
        var model = new Option<string>("--model") { Description = "resnet18 | resnet34", DefaultValueFactory = _ => "resnet34" };
        var stem = new Option<string>("--stem") { Description = "imagenet | cifar", DefaultValueFactory = _ => "imagenet" };
        var width = new Option<int>("--width") { Description = "Base channels (torchvision: 64).", DefaultValueFactory = _ => 64 };
        var images = new Option<int>("--images") { Description = "Training images per epoch.", DefaultValueFactory = _ => defaults.TrainImages };
        var bucket = new Option<double>("--bucket-mb") { Description = "DDP bucket cap after the first 1 MiB bucket, MiB.", DefaultValueFactory = _ => defaults.BucketMb };
        var noOverlap = new Option<bool>("--no-overlap") { Description = "DDP: all-reduce every bucket after backward." };
        var dispatch = new Option<string>("--dp-dispatch") { Description = "serial (one host thread launches every replica's kernels, as PyTorch under the GIL) | parallel.", DefaultValueFactory = _ => "serial" };
        var kernels = new Option<int>("--kernels-per-step") { Description = "Kernel launches per replica-step (assumed).", DefaultValueFactory = _ => defaults.KernelsPerStep };
        var launchUs = new Option<double>("--launch-us") { Description = "Host time per kernel launch, microseconds (assumed).", DefaultValueFactory = _ => defaults.LaunchUs };
        var memory = new Option<double>("--memory-gbs") { Description = "Device memory bandwidth, GB/s (RTX 4070 Ti: 504).", DefaultValueFactory = _ => defaults.MemoryGBs };

        var command = new Command("model", "Predict single, DP and DDP step and epoch times on N devices from a single-device time, the model's bytes and the link; every assumption is printed.")
        {
            seedCheck, from, link, bandwidth, hostBandwidth, latency, p2p, devices, epoch, batch, model, stem, width, images, bucket, noOverlap, dispatch, kernels, launchUs, memory,
        };
        command.SetAction(r => CliErrors.Run(() =>
        {
            ComparisonResult? comparison = r.GetValue(from) is string path ? ScalingReport.ReadComparison(path) : null;
            (Link preset, Link? network) = Link.Resolve(r.GetValue(link) ?? comparison?.DdpLink ?? Link.DefaultPreset);
            bool overridden = r.GetValue(bandwidth) is not null || r.GetValue(hostBandwidth) is not null || r.GetValue(latency) is not null || r.GetValue(p2p) is not null;
            Link l = preset with
            {
                Name = overridden ? $"custom link (from {preset.Name})" : preset.Name,
                BandwidthGBs = r.GetValue(bandwidth) ?? preset.BandwidthGBs,
                HostBandwidthGBs = r.GetValue(hostBandwidth) ?? preset.HostBandwidthGBs,
                LatencyUs = r.GetValue(latency) ?? preset.LatencyUs,
                PeerToPeer = r.GetValue(p2p) ?? preset.PeerToPeer,
            };
            l.Validate();
            string d = r.GetValue(dispatch)!;
            if (d is not ("serial" or "parallel")) throw new ArgumentException($"--dp-dispatch must be serial or parallel, got '{d}'.");
            var s = new ScalingSettings(
                Devices: r.GetValue(devices), BatchSize: r.GetValue(batch), TrainImages: r.GetValue(images), BucketMb: r.GetValue(bucket),
                Overlap: !r.GetValue(noOverlap), DpSerialDispatch: d == "serial", KernelsPerStep: r.GetValue(kernels), LaunchUs: r.GetValue(launchUs),
                MemoryGBs: r.GetValue(memory));

            if (r.GetValue(seedCheck))
            {
                if (network is not null) throw new ArgumentException($"--seed-check predicts the seed's PCIe machine; --link {r.GetValue(link)} (a network rate) does not apply to it.");
                Console.Out.Write(SeedCheck.Render(l, s));
                return 0;
            }
            if (comparison is not null)
            {
                Console.Out.Write(ScalingReport.FromComparison(comparison, l, s, network));
                return 0;
            }
            double e = r.GetValue(epoch) ?? throw new ArgumentException("Give --single-epoch-seconds S, --from compare.json, or --seed-check.");
            s.Validate();
            ModelState m = ModelState.Of(ResNetConfig.Parse(r.GetValue(model)!, r.GetValue(stem)!, r.GetValue(width)));
            ScalingPrediction p = ScalingModel.Predict(SingleStep.FromEpoch(e, m, s, l), m, s, l, network);
            Console.Out.Write(ScalingReport.Table(p));
            Console.Out.WriteLine();
            Console.Out.WriteLine("Assumptions:");
            foreach (string a in p.Assumptions) Console.Out.WriteLine("- " + a);
            return 0;
        }));
        return command;
    }
}
