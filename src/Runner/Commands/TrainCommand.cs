using System.CommandLine;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary><c>engine train</c>: the seed's training loop with the seed's defaults.</summary>
internal static class TrainCommand
{
    /// <summary>The options shared by <c>train</c> and <c>compare</c>, bound once into a <see cref="TrainOptions"/>.</summary>
    internal sealed class Binder(TrainOptions D)
    {
        public Binder() : this(new TrainOptions()) { }

        public readonly Option<string> Mode = new("--mode") { Description = "single | dp | ddp", DefaultValueFactory = _ => D.Mode };
        public readonly Option<string> Device = new("--device") { Description = "auto | cpu | cuda | cuda:N", DefaultValueFactory = _ => D.Device };
        public readonly Option<string> Model = new("--model") { Description = "resnet18 | resnet34", DefaultValueFactory = _ => D.Model };
        public readonly Option<string> Stem = new("--stem") { Description = "imagenet (7x7/2 conv + max-pool, torchvision's) | cifar (3x3/1 conv, no pool)", DefaultValueFactory = _ => D.Stem };
        public readonly Option<int> Width = new("--width") { Description = "base channels (torchvision: 64)", DefaultValueFactory = _ => D.Width };
        public readonly Option<string> Dataset = new("--dataset") { Description = "cifar10 | fashion-mnist | synthetic", DefaultValueFactory = _ => D.Dataset };
        public readonly Option<string?> Data = new("--data") { Description = "CIFAR-10 binary folder or .tar.gz; Fashion-MNIST IDX folder; without --dataset the format is detected [default: ./data for cifar10, /usr/share/datasets/fashion-mnist for fashion-mnist, none for synthetic]" };
        public readonly Option<int?> TrainLimit = new("--train-limit") { Description = $"use only the first N training images [default: {(D.TrainLimit is int n ? n : "all")}]", DefaultValueFactory = _ => D.TrainLimit };
        public readonly Option<int?> TestLimit = new("--test-limit") { Description = $"use only the first N test images (0: no evaluation) [default: {(D.TestLimit is int n ? n : "all")}]", DefaultValueFactory = _ => D.TestLimit };
        public readonly Option<int> Epochs = new("--epochs") { DefaultValueFactory = _ => D.Epochs };
        public readonly Option<int> BatchSize = new("--batch-size") { Description = "per device for dp and ddp, as in the seed", DefaultValueFactory = _ => D.BatchSize };
        public readonly Option<float> Lr = new("--lr") { DefaultValueFactory = _ => D.Lr };
        public readonly Option<float> Momentum = new("--momentum") { DefaultValueFactory = _ => D.Momentum };
        public readonly Option<float> WeightDecay = new("--weight-decay") { DefaultValueFactory = _ => D.WeightDecay };
        public readonly Option<string> Augment = new("--augment") { Description = "standard (random crop 4 px + flip) | none", DefaultValueFactory = _ => D.Augment };
        // A string, not a bool: System.CommandLine leaves a bool option's non-boolean value ("maybe") unparsed
        // and reports it as an unknown argument, where the user needs to hear what --shuffle expects.
        public readonly Option<string> Shuffle = new("--shuffle") { Description = "shuffle every epoch: true | false", DefaultValueFactory = _ => D.Shuffle ? "true" : "false" };
        public readonly Option<int> Seed = new("--seed") { DefaultValueFactory = _ => D.Seed };
        public readonly Option<string?> Init = new("--init") { Description = "initial weights: a safetensors state_dict (torchvision names)" };
        public readonly Option<string?> Save = new("--save") { Description = "write the model (safetensors, torchvision names) after every epoch, training state beside it" };
        public readonly Option<string?> Resume = new("--resume") { Description = "continue a run from a --save file and its training-state file" };
        public readonly Option<string?> Output = new("--output") { Description = "write the run's results as JSON" };
        public readonly Option<string?> DevicesOpt = new("--devices") { Description = "dp: comma-separated replicas (cuda:0,cuda:1 | cpu,cpu | cuda:0,cuda:0) [default: every GPU, or two CPU replicas]" };
        public readonly Option<bool> DpSerialDispatch = new("--dp-serial-dispatch") { Description = "dp: drive every device from one host thread, as Python's GIL effectively forces" };
        public readonly Option<string> Backend = new("--backend") { Description = "ddp: nccl | host | auto", DefaultValueFactory = _ => D.Backend };
        public readonly Option<double> BucketMb = new("--bucket-mb") { Description = "ddp: gradient bucket cap in MB (the first bucket is 1 MB)", DefaultValueFactory = _ => D.BucketMb };
        public readonly Option<bool> NoOverlap = new("--no-overlap") { Description = "ddp: start the all-reduces only after backward" };
        public readonly Option<int> Timeout = new("--timeout") { Description = "ddp: bound in seconds on every collective wait", DefaultValueFactory = _ => D.Timeout };
        public readonly Option<string?> Trace = new("--trace") { Description = "write a Chrome-trace JSON (Perfetto, chrome://tracing): phases per device, per-replica work, all-reduce buckets" };
        public readonly Option<string?> Profile = new("--profile") { Description = "kernels: time every kernel launch and print a per-kernel table (like torch.profiler's key_averages)" };
        public readonly Option<string> BnMode = new("--bn-mode") { Description = "train (batch statistics) | eval (BN frozen in eval mode while training)", DefaultValueFactory = _ => D.BnMode };
        public readonly Option<bool> VerifyReplicas = new("--verify-replicas") { Description = "ddp: check after every step that all ranks hold bit-identical parameters" };

        private readonly HashSet<Option> _offered = new();

        /// <summary>Adds the options to <paramref name="c"/>, all but <paramref name="ignored"/>: a command offers no option it would ignore.</summary>
        public void AddTo(Command c, params Option[] ignored)
        {
            foreach (Option o in new Option[] { Mode, Device, Model, Stem, Width, Dataset, Data, TrainLimit, TestLimit, Epochs, BatchSize, Lr, Momentum, WeightDecay, Augment, Shuffle, Seed, Init, Save, Resume, Output, DevicesOpt, DpSerialDispatch, Backend, BucketMb, NoOverlap, Timeout, VerifyReplicas, Trace, Profile, BnMode })
            {
                if (ignored.Contains(o)) continue;
                c.Options.Add(o);
                _offered.Add(o);
            }
        }

        /// <summary>The option's value, or the command's default where the command does not offer it.</summary>
        private T Get<T>(ParseResult r, Option<T> o, T notOffered) => _offered.Contains(o) ? r.GetValue(o)! : notOffered;

        public TrainOptions Bind(ParseResult r)
        {
            string? data = Get(r, Data, null);
            bool datasetGiven = r.GetResult(Dataset) is { Implicit: false };
            string dataset = r.GetValue(Dataset)!.ToLowerInvariant();
            if (data is not null && !datasetGiven)
            {
                dataset = Engine.Runner.Data.DatasetLoader.Detect(data);
            }
            else if (data is not null && dataset == "synthetic")
            {
                throw new ArgumentException($"--data {data} is not read by --dataset synthetic: drop one of the two (--dataset cifar10 or fashion-mnist reads it).");
            }
            return new TrainOptions
            {
                Mode = Get(r, Mode, D.Mode).ToLowerInvariant(),
                Device = r.GetValue(Device)!,
                Model = r.GetValue(Model)!,
                Stem = r.GetValue(Stem)!,
                Width = r.GetValue(Width),
                Dataset = dataset,
                Data = data,
                TrainLimit = r.GetValue(TrainLimit),
                TestLimit = r.GetValue(TestLimit),
                Epochs = r.GetValue(Epochs),
                BatchSize = r.GetValue(BatchSize),
                Lr = r.GetValue(Lr),
                Momentum = r.GetValue(Momentum),
                WeightDecay = r.GetValue(WeightDecay),
                Augment = r.GetValue(Augment)!.ToLowerInvariant(),
                Shuffle = ParseTrueFalse(Shuffle.Name, r.GetValue(Shuffle)!),
                Seed = r.GetValue(Seed),
                Init = r.GetValue(Init),
                Save = Get(r, Save, D.Save),
                Resume = r.GetValue(Resume),
                Output = r.GetValue(Output),
                Devices = r.GetValue(DevicesOpt),
                DpSerialDispatch = r.GetValue(DpSerialDispatch),
                Backend = r.GetValue(Backend)!.ToLowerInvariant(),
                BucketMb = r.GetValue(BucketMb),
                NoOverlap = r.GetValue(NoOverlap),
                Timeout = r.GetValue(Timeout),
                VerifyReplicas = r.GetValue(VerifyReplicas),
                Trace = Get(r, Trace, D.Trace),
                Profile = r.GetValue(Profile),
                BnMode = r.GetValue(BnMode)!.ToLowerInvariant(),
            };
        }
    }

    private static bool ParseTrueFalse(string flag, string text) => bool.TryParse(text.Trim(), out bool value) ? value
        : throw new ArgumentException($"{flag}: expected true or false, got '{text}'.");

    /// <summary>The trainer of <paramref name="options"/>' mode.</summary>
    public static Trainer Create(TrainOptions options, TextWriter stdout, TextWriter progress) => options.Mode switch
    {
        "dp" => new DataParallelTrainer(options, stdout, progress),
        "ddp" => new DistributedTrainer(options, stdout, progress),
        _ => new SingleTrainer(options, stdout, progress),
    };

    public static Command Create()
    {
        var command = new Command("train", "Train a ResNet (defaults: the seed's resnet34, batch 512, 4 epochs, SGD 0.1/0.9/5e-4). One line per epoch on stdout, progress on stderr.");
        var binder = new Binder();
        binder.AddTo(command);
        command.SetAction(r => CliErrors.Run(() =>
        {
            TrainOptions options = binder.Bind(r).ResolveDevices();
            using Trainer trainer = Create(options, Console.Out, Console.Error);
            trainer.Run();
            return 0;
        }));
        return command;
    }
}
