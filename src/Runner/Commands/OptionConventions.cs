using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Engine.Runner.Commands;

/// <summary>
/// What every option of the CLI does alike, applied once to the whole command tree: parse errors in
/// words ("--batch-size: expected a whole number, got '1e9'" instead of System.CommandLine's "Cannot
/// parse argument '1e9' ... expected type 'System.Int32'"), and a default in every option's help line
/// (System.CommandLine shows none for flags or for a default of null).
/// </summary>
internal static class OptionConventions
{
    public static void Apply(Command command)
    {
        foreach (Option option in command.Options)
        {
            ShowDefault(option);
            switch (option)
            {
                case Option<int> o when o.CustomParser is null:
                    o.CustomParser = r => Parse<int>(r, o.Name, "a whole number", s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : null);
                    break;
                case Option<int?> o when o.CustomParser is null:
                    o.CustomParser = r => Parse<int>(r, o.Name, "a whole number", s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : null);
                    break;
                case Option<float> o when o.CustomParser is null:
                    o.CustomParser = r => Parse<float>(r, o.Name, "a number", s => float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) ? v : null);
                    break;
                case Option<double> o when o.CustomParser is null:
                    o.CustomParser = r => Parse<double>(r, o.Name, "a number", s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null);
                    break;
            }
        }
        foreach (Command sub in command.Subcommands)
        {
            Apply(sub);
        }
    }

    private static void ShowDefault(Option option)
    {
        if (option.Required || option is HelpOption or VersionOption) return;
        object? value = option.HasDefaultValue ? option.GetDefaultValue() : null;
        bool helpShowsIt = value is not null and not bool;
        if (helpShowsIt || (option.Description ?? "").Contains("[default:", StringComparison.Ordinal)) return;
        string shown = value is bool b ? (b ? "true" : "false") : option.ValueType == typeof(bool) ? "false" : "none";
        option.Description = $"{option.Description} [default: {shown}]".TrimStart();
    }

    private static T Parse<T>(ArgumentResult result, string name, string expected, Func<string, T?> parse) where T : struct
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (parse(text.Trim()) is T value)
        {
            return value;
        }
        result.AddError($"{name}: expected {expected}, got '{text}'.");
        return default;
    }
}
