using System.CommandLine;
using Engine.Runner.Checks;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Commands;

/// <summary><c>engine check kernels</c>: every kernel against its float64 reference on the chosen device (the GPU half of the kernel tests).</summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var check = new Command("check", "Self-checks to run on a GPU host.");
        var kernels = new Command("kernels", "Run every kernel on --device against its float64 reference (poisoned outputs, random inputs); exit 1 if any fails.");
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto", Description = "auto | cpu | cuda | cuda:N" };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => Environment.TickCount };
        var large = new Option<bool>("--large") { Description = "also ResNet-sized shapes (slow on the CPU accelerator)" };
        kernels.Options.Add(device);
        kernels.Options.Add(seed);
        kernels.Options.Add(large);
        kernels.SetAction(r => CliErrors.Run(() =>
        {
            using Device dev = Device.Create(r.GetValue(device)!);
            int s = r.GetValue(seed);
            Console.WriteLine($"kernel checks on {dev}, seed {s}");
            var results = KernelChecks.RunAll(dev, s, r.GetValue(large));
            foreach (var k in results)
            {
                Console.WriteLine(k.Skipped is not null ? $"skip {k.Kernel,-42} {k.Shape,-40} {k.Skipped}"
                    : k.Failure is null
                    ? $"{(k.Passed ? "ok  " : "FAIL")} {k.Kernel,-42} {k.Shape,-40} err {k.MaxError,8:G3} (<= 1)  {k.Milliseconds,9:F3} ms"
                        + (k.Passed ? "" : $"\n     {k.Detail}")
                    : $"FAIL {k.Kernel,-42} {k.Shape,-40} threw {k.Failure}");
            }
            int failed = results.Count(k => k.Failed), skipped = results.Count(k => k.Skipped is not null);
            Console.WriteLine($"{results.Count(k => k.Passed)} passed, {failed} failed{(skipped > 0 ? $", {skipped} skipped (the device cannot run them)" : "")}");
            return failed == 0 ? 0 : 1;
        }));
        check.Subcommands.Add(kernels);
        return check;
    }
}
