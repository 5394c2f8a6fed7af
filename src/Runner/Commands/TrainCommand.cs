using System.CommandLine;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary><c>engine train</c>: the seed's training loop with the seed's defaults.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var command = new Command("train", "Train a ResNet (defaults: the seed's resnet34, batch 512, 4 epochs, SGD 0.1/0.9/5e-4). One line per epoch on stdout, progress on stderr.");
        var binder = new TrainOptionBinder();
        binder.AddTo(command);
        command.SetAction(r => CliErrors.Run(() =>
        {
            TrainOptions options = binder.Bind(r).ResolveDevices();
            using Trainer trainer = options.Mode.CreateTrainer(options, Console.Out, Console.Error);
            trainer.Run();
            return 0;
        }));
        return command;
    }
}
