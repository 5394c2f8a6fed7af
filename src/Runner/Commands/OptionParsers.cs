using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Engine.Runner.Commands;

/// <summary>
/// Parse errors in words: "--batch-size: expected a whole number, got '1e9'" instead of
/// System.CommandLine's "Cannot parse argument '1e9' ... expected type 'System.Int32'". Applied once to
/// every option of the command tree that has no parser of its own.
/// </summary>
internal static class OptionParsers
{
    public static void Apply(Command command)
    {
        foreach (Option option in command.Options)
        {
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
