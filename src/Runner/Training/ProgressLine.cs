using System.Globalization;

namespace Engine.Runner.Training;

/// <summary>
/// The numbers of a progress line: images per second so far, and the time left in the epoch (or the
/// evaluation) and in the whole run at that rate, as a user waiting on a long run wants to read them.
/// </summary>
public static class ProgressLine
{
    /// <summary>Seconds left for <paramref name="left"/> more units at the rate of <paramref name="done"/> units in <paramref name="elapsedSeconds"/>; null before any unit is done.</summary>
    public static double? SecondsLeft(long done, long left, double elapsedSeconds) => done > 0 ? elapsedSeconds / done * left : null;

    /// <summary>
    /// "412 img/s, epoch ETA 45 s, run ETA 2 min 25 s": the run's remaining training at this epoch's
    /// step rate (<paramref name="epochsAfterThis"/> more epochs of <paramref name="steps"/> steps).
    /// </summary>
    public static string Training(int step, int steps, int imagesPerStep, double elapsedSeconds, int epochsAfterThis)
    {
        double? epochLeft = SecondsLeft(step, steps - step, elapsedSeconds);
        double? runLeft = SecondsLeft(step, (steps - step) + (long)epochsAfterThis * steps, elapsedSeconds);
        return $"{Rate((long)step * imagesPerStep, elapsedSeconds)}, epoch ETA {Duration(epochLeft)}, run ETA {Duration(runLeft)}";
    }

    /// <summary>"1234 img/s, ETA 3 s" for an evaluation <paramref name="done"/> of <paramref name="total"/> images in.</summary>
    public static string Evaluation(int done, int total, double elapsedSeconds)
        => $"{Rate(done, elapsedSeconds)}, ETA {Duration(SecondsLeft(done, total - done, elapsedSeconds))}";

    private static string Rate(long images, double seconds)
        => seconds > 0 ? string.Format(CultureInfo.InvariantCulture, "{0:F0} img/s", images / seconds) : "- img/s";

    /// <summary>"45 s", "2 min 05 s", "3 h 02 min"; "?" when unknown.</summary>
    public static string Duration(double? seconds)
    {
        if (seconds is not double s || !double.IsFinite(s)) return "?";
        var t = TimeSpan.FromSeconds(Math.Max(0, Math.Round(s)));
        return t.TotalHours >= 1 ? string.Format(CultureInfo.InvariantCulture, "{0} h {1:D2} min", (int)t.TotalHours, t.Minutes)
            : t.TotalMinutes >= 1 ? string.Format(CultureInfo.InvariantCulture, "{0} min {1:D2} s", (int)t.TotalMinutes, t.Seconds)
            : string.Format(CultureInfo.InvariantCulture, "{0} s", (int)t.TotalSeconds);
    }
}
