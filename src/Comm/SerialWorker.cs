using System.Collections.Concurrent;

namespace Engine.Comm;

/// <summary>
/// A dedicated thread that runs posted actions one at a time, in order: the communicator's own
/// thread (collectives run in call order, as on an NCCL stream) and the ring's sending thread.
/// </summary>
internal sealed class SerialWorker : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread _thread;

    public SerialWorker(string name, Action? onStart = null)
    {
        _thread = new Thread(() =>
        {
            onStart?.Invoke();
            foreach (Action action in _queue.GetConsumingEnumerable())
            {
                action();
            }
        })
        {
            IsBackground = true,
            Name = name,
        };
        _thread.Start();
    }

    /// <summary>Runs <paramref name="action"/> after everything posted before; the task carries its outcome.</summary>
    public Task Post(Action action)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Add(() =>
        {
            try
            {
                action();
                done.TrySetResult();
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        });
        return done.Task;
    }

    /// <summary>Lets queued actions finish (bounded wait), then ends the thread.</summary>
    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(5));
    }
}
