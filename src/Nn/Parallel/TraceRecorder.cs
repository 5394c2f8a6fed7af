using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Engine.Nn.Parallel;

/// <summary>
/// Records complete slices (phases, per-device work, all-reduce buckets) and writes them as a
/// Chrome-trace JSON file that Perfetto and chrome://tracing open: one process per rank, one track
/// per device or communication stream. Times are wall-clock microseconds, so the files of several
/// ranks on one machine merge onto one time axis.
/// </summary>
public sealed class TraceRecorder
{
    private static readonly double OriginUs = DateTime.UtcNow.Ticks / 10.0 - Stopwatch.GetTimestamp() * 1e6 / Stopwatch.Frequency;

    private readonly List<JsonObject> _events = new();
    private readonly Dictionary<string, int> _tracks = new();
    private readonly int _pid;
    private readonly string _processName;

    public TraceRecorder(int pid, string processName)
    {
        _pid = pid;
        _processName = processName;
    }

    public static double ToMicroseconds(long timestamp) => OriginUs + timestamp * 1e6 / Stopwatch.Frequency;

    /// <summary>Adds a complete slice from <paramref name="start"/> to <paramref name="end"/> (Stopwatch timestamps).</summary>
    public void Slice(string name, string category, string track, long start, long end, long bytes = 0, string? detail = null)
    {
        var args = new JsonObject();
        if (bytes > 0) args["bytes"] = bytes;
        if (detail is not null) args["detail"] = detail;
        lock (_events)
        {
            _events.Add(new JsonObject
            {
                ["name"] = name,
                ["cat"] = category,
                ["ph"] = "X",
                ["ts"] = Math.Round(ToMicroseconds(start), 3),
                ["dur"] = Math.Round(Math.Max(0, end - start) * 1e6 / Stopwatch.Frequency, 3),
                ["pid"] = _pid,
                ["tid"] = Track(track),
                ["args"] = args,
            });
        }
    }

    private int Track(string name)
    {
        if (!_tracks.TryGetValue(name, out int tid))
        {
            tid = _tracks.Count;
            _tracks[name] = tid;
        }
        return tid;
    }

    public JsonArray Events()
    {
        var all = new JsonArray
        {
            new JsonObject { ["name"] = "process_name", ["ph"] = "M", ["pid"] = _pid, ["tid"] = 0, ["args"] = new JsonObject { ["name"] = _processName } },
        };
        foreach (var (name, tid) in _tracks)
        {
            all.Add(new JsonObject { ["name"] = "thread_name", ["ph"] = "M", ["pid"] = _pid, ["tid"] = tid, ["args"] = new JsonObject { ["name"] = name } });
            all.Add(new JsonObject { ["name"] = "thread_sort_index", ["ph"] = "M", ["pid"] = _pid, ["tid"] = tid, ["args"] = new JsonObject { ["sort_index"] = tid } });
        }
        lock (_events)
        {
            foreach (JsonObject e in _events) all.Add(e.DeepClone());
        }
        return all;
    }

    public void Write(string path) => WriteEvents(path, Events());

    public static void WriteEvents(string path, JsonArray events)
    {
        var root = new JsonObject { ["traceEvents"] = events, ["displayTimeUnit"] = "ms" };
        AtomicFile.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
    }

    /// <summary>Merges several trace files (one per rank) into <paramref name="path"/>.</summary>
    public static void Merge(IEnumerable<string> parts, string path)
    {
        var all = new JsonArray();
        foreach (string part in parts)
        {
            JsonNode? doc = JsonNode.Parse(File.ReadAllText(part));
            foreach (JsonNode? e in doc?["traceEvents"]?.AsArray() ?? new JsonArray()) all.Add(e?.DeepClone());
        }
        WriteEvents(path, all);
    }
}
