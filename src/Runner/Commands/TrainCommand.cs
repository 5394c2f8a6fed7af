using System.CommandLine;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary><c>engine train</c>: the seed's training loop with the seed's defaults.</summary>
internal static class TrainCommand
{
    /// <summary>The options shared by <c>train</c> and <c>compare</c>, bound once into a <see cref="TrainOptions"/>.</summary>
    internal sealed class Binder
    {
        private static readonly TrainOptions D = new();
        public readonly Option<string> Mode = new("--mode") { Description = "single | dp | ddp", DefaultValueFactory = _ => D.Mode };
        public readonly Option<string> Device = new("--device") { Description = "auto | cpu | cuda | cuda:N", DefaultValueFactory = _ => D.Device };
        public readonly Option<string> Model = new("--model") { Description = "resnet18 | resnet34", DefaultValueFactory = _ => D.Model };
        public readonly Option<string> Stem = new("--stem") { Description = "imagenet (7x7/2 conv + max-pool, torchvision's) | cifar (3x3/1 conv, no pool)", DefaultValueFactory = _ => D.Stem };
        public readonly Option<int> Width = new("--width") { Description = "base channels (torchvision: 64)", DefaultValueFactory = _ => D.Width };
        public readonly Option<string> Dataset = new("--dataset") { Description = "cifar10 | fashion-mnist | synthetic", DefaultValueFactory = _ => D.Dataset };
        public readonly Option<string?> Data = new("--data") { Description = "CIFAR-10 binary folder or .tar.gz; Fashion-MNIST IDX folder (default /usr/share/datasets/fashion-mnist)" };
        public readonly Option<int?> TrainLimit = new("--train-limit") { Description = "use only the first N training images" };
        public readonly Option<int?> TestLimit = new("--test-limit") { Description = "use only the first N test images (0: no evaluation)" };
        public readonly Option<int> Epochs = new("--epochs") { DefaultValueFactory = _ => D.Epochs };
        public readonly Option<int> BatchSize = new("--batch-size") { Description = "per device for dp and ddp, as in the seed", DefaultValueFactory = _ => D.BatchSize };
        public readonly Option<float> Lr = new("--lr") { DefaultValueFactory = _ => D.Lr };
        public readonly Option<float> Momentum = new("--momentum") { DefaultValueFactory = _ => D.Momentum };
        public readonly Option<float> WeightDecay = new("--weight-decay") { DefaultValueFactory = _ => D.WeightDecay };
        public readonly Option<string> Augment = new("--augment") { Description = "standard (random crop 4 px + flip) | none", DefaultValueFactory = _ => D.Augment };
        public readonly Option<bool> Shuffle = new("--shuffle") { Description = "true | false", DefaultValueFactory = _ => D.Shuffle };
        public readonly Option<int> Seed = new("--seed") { DefaultValueFactory = _ => D.Seed };
        public readonly Option<string?> Init = new("--init") { Description = "initial weights: a safetensors state_dict (torchvision names)" };
        public readonly Option<string?> Save = new("--save") { Description = "write the model (safetensors, torchvision names) after every epoch, training state beside it" };
        public readonly Option<string?> Resume = new("--resume") { Description = "continue a run from a --save file and its training-state file" };
        public readonly Option<string?> Output = new("--output") { Description = "write the run's results as JSON" };

        public void AddTo(Command c)
        {
            foreach (Option o in new Option[] { Mode, Device, Model, Stem, Width, Dataset, Data, TrainLimit, TestLimit, Epochs, BatchSize, Lr, Momentum, WeightDecay, Augment, Shuffle, Seed, Init, Save, Resume, Output })
            {
                c.Options.Add(o);
            }
        }

        public TrainOptions Bind(ParseResult r)
        {
            string? data = r.GetValue(Data);
            string dataset = r.GetValue(Dataset)!;
            if (data is not null && r.GetResult(Dataset) is null)
            {
                throw new ArgumentException("--data was given without --dataset: say which format it is (--dataset cifar10 or fashion-mnist).");
            }
            return new TrainOptions
            {
                Mode = r.GetValue(Mode)!.ToLowerInvariant(),
                Device = r.GetValue(Device)!,
                Model = r.GetValue(Model)!,
                Stem = r.GetValue(Stem)!,
                Width = r.GetValue(Width),
                Dataset = dataset.ToLowerInvariant(),
                Data = data,
                TrainLimit = r.GetValue(TrainLimit),
                TestLimit = r.GetValue(TestLimit),
                Epochs = r.GetValue(Epochs),
                BatchSize = r.GetValue(BatchSize),
                Lr = r.GetValue(Lr),
                Momentum = r.GetValue(Momentum),
                WeightDecay = r.GetValue(WeightDecay),
                Augment = r.GetValue(Augment)!.ToLowerInvariant(),
                Shuffle = r.GetValue(Shuffle),
                Seed = r.GetValue(Seed),
                Init = r.GetValue(Init),
                Save = r.GetValue(Save),
                Resume = r.GetValue(Resume),
                Output = r.GetValue(Output),
            };
        }
    }

    public static Command Create()
    {
        var command = new Command("train", "Train a ResNet (defaults: the seed's resnet34, batch 512, 4 epochs, SGD 0.1/0.9/5e-4). One line per epoch on stdout, progress on stderr.");
        var binder = new Binder();
        binder.AddTo(command);
        command.SetAction(r => CliErrors.Run(() =>
        {
            TrainOptions options = binder.Bind(r);
            using var trainer = new SingleTrainer(options, Console.Out, Console.Error);
            trainer.Run();
            return 0;
        }));
        return command;
    }
}
