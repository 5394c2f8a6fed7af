using System.CommandLine;
using System.CommandLine.Parsing;
using System.Reflection;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary>
/// The command-line options of <see cref="TrainOptions"/>, made from its declarations (<see cref="CliOptionAttribute"/>)
/// with the defaults of a given instance (train's, or compare's quicker ones), and bound back into one record.
/// </summary>
internal sealed class TrainOptionBinder
{
    private readonly TrainOptions _defaults;
    private readonly List<(PropertyInfo Property, CliOptionAttribute Cli, Option Option)> _options = new();
    private readonly HashSet<Option> _offered = new();

    public TrainOptionBinder(TrainOptions? defaults = null)
    {
        _defaults = defaults ?? new TrainOptions();
        foreach (var (p, cli) in TrainOptions.Declared)
        {
            _options.Add((p, cli, Make(p, cli, p.GetValue(_defaults))));
        }
    }

    /// <summary>The option bound to the property named <paramref name="property"/> (<c>nameof(TrainOptions.BucketMb)</c>).</summary>
    public Option this[string property] => _options.First(o => o.Property.Name == property).Option;

    private static Option Make(PropertyInfo p, CliOptionAttribute cli, object? defaultValue)
    {
        string description = cli.Description;
        if (p.PropertyType == typeof(TrainingMode)) description = $"{TrainingMode.Names}: {cli.Description}";
        else if (cli.Choices is not null && description.Length == 0) description = cli.Choices.Replace("|", " | ", StringComparison.Ordinal);
        if (cli.DefaultText is not null) description += $" [default: {cli.DefaultText}]";
        // Modes and true|false values are read as text and checked by Bind, so that a bad value is named in words.
        bool asText = p.PropertyType == typeof(TrainingMode) || cli.TrueFalse;
        Type type = asText ? typeof(string) : p.PropertyType;
        object? shownDefault = asText && defaultValue is not null ? TrainOptions.Format(defaultValue is TrainingMode m ? m.Name : defaultValue) : defaultValue;
        return (Option)typeof(TrainOptionBinder).GetMethod(nameof(MakeTyped), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(type).Invoke(null, new[] { cli.Flag, description, shownDefault })!;
    }

    private static Option<T> MakeTyped<T>(string flag, string description, object? defaultValue)
    {
        var o = new Option<T>(flag) { Description = description };
        if (defaultValue is not null) o.DefaultValueFactory = _ => (T)defaultValue;
        return o;
    }

    /// <summary>Adds the options to <paramref name="c"/>, all but those of <paramref name="ignored"/> properties: a command offers no option it would ignore.</summary>
    public void AddTo(Command c, params string[] ignored)
    {
        foreach (var (p, _, o) in _options)
        {
            if (ignored.Contains(p.Name)) continue;
            c.Options.Add(o);
            _offered.Add(o);
        }
    }

    public TrainOptions Bind(ParseResult r)
    {
        TrainOptions bound = _defaults with { };
        foreach (var (p, cli, o) in _options)
        {
            if (!_offered.Contains(o)) continue;
            object? value = r.GetResult(o) is null && !o.HasDefaultValue ? null : GetValue(r, o);
            p.SetValue(bound, Convert(p, cli, value));
        }
        string? data = bound.Data;
        bool datasetGiven = _offered.Contains(this[nameof(TrainOptions.Dataset)]) && r.GetResult(this[nameof(TrainOptions.Dataset)]) is { Implicit: false };
        if (data is not null && !datasetGiven)
        {
            bound = bound with { Dataset = Engine.Runner.Data.DatasetLoader.Detect(data) };
        }
        else if (data is not null && bound.Dataset == "synthetic")
        {
            throw new ArgumentException($"--data {data} is not read by --dataset synthetic: drop one of the two (--dataset cifar10 or fashion-mnist reads it).");
        }
        return bound;
    }

    private static object? GetValue(ParseResult r, Option o) => o switch
    {
        Option<string> s => r.GetValue(s),
        _ => typeof(ParseResult).GetMethods().First(m => m.Name == nameof(ParseResult.GetValue) && m.IsGenericMethod
                && m.GetParameters()[0].ParameterType.IsGenericType && m.GetParameters()[0].ParameterType.GetGenericTypeDefinition() == typeof(Option<>))
            .MakeGenericMethod(o.ValueType).Invoke(r, new object[] { o }),
    };

    private static object? Convert(PropertyInfo p, CliOptionAttribute cli, object? value)
    {
        if (p.PropertyType == typeof(TrainingMode)) return TrainingMode.Parse((string)value!);
        if (cli.TrueFalse)
        {
            string text = (string)value!;
            return bool.TryParse(text.Trim(), out bool b) ? b : throw new ArgumentException($"{cli.Flag}: expected true or false, got '{text}'.");
        }
        if (value is string s && cli.Choices is not null) return s.ToLowerInvariant();
        return value;
    }
}
