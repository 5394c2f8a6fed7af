using System.Reflection;

namespace Engine.Kernels.Cases;

/// <summary>
/// One check of an op at one shape with the engine's own launcher: built fresh from a device and a random
/// source, launched once on poisoned outputs and compared with the reference. The kernel tests run every
/// one of them (tests/Kernels.Tests/OpCaseTests.cs) and so does <c>engine check kernels</c>.
/// </summary>
public sealed record CaseCheck(string Op, string Shape, Func<Device, Random, CheckResult> Run)
{
    /// <summary>"op shape": unique in the catalog.</summary>
    public string Id => $"{Op} {Shape}";

    public static CaseCheck Of<TL>(string op, object shape, Func<Device, Random, OpCase<TL>> make, TL launcher) where TL : Delegate
        => new(op, shape.ToString()!, (dev, rng) =>
        {
            using OpCase<TL> k = make(dev, rng);
            return k.CheckOutputs(launcher);
        });

    /// <summary>The check shapes, followed by the large ones when <paramref name="large"/>.</summary>
    public static IEnumerable<T> Sizes<T>(IReadOnlyList<T> shapes, IReadOnlyList<T> largeShapes, bool large) => large ? shapes.Concat(largeShapes) : shapes;
}

/// <summary>An op case that lists its own checks: its shapes with the engine's launcher (<see cref="CaseCatalog"/> finds it).</summary>
public interface ICheckedCase
{
    /// <param name="large">Also ResNet-sized shapes, slow on the CPU accelerator.</param>
    static abstract IEnumerable<CaseCheck> Checks(bool large);
}

/// <summary>Every op's checks, from every <see cref="ICheckedCase"/> of this library: adding an op's case adds its checks everywhere.</summary>
public static class CaseCatalog
{
    public static IReadOnlyList<CaseCheck> Checks(bool large)
    {
        var checks = typeof(CaseCatalog).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(ICheckedCase).IsAssignableFrom(t))
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .SelectMany(t => (IEnumerable<CaseCheck>)t.GetMethod(nameof(ICheckedCase.Checks), BindingFlags.Public | BindingFlags.Static, [typeof(bool)])!
                .Invoke(null, [large])!)
            .ToList();
        if (checks.GroupBy(c => c.Id).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new InvalidOperationException($"Two op checks share the id '{twice.Key}': each check needs its own op and shape.");
        }
        return checks;
    }
}
