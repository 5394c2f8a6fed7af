using System.Runtime.InteropServices;

namespace Engine.Comm;

/// <summary>
/// SIGINT, SIGTERM and SIGHUP turned into a stop request instead of the runtime's immediate exit, so
/// that a launcher can forward the signal to its ranks and wait for them (what a scheduler's or a
/// user's <c>kill</c> expects of torchrun). <see cref="Signal"/> is the number of the first one received.
/// </summary>
public sealed class StopSignals : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly List<PosixSignalRegistration> _registrations = new();
    private int _signal;

    public StopSignals()
    {
        foreach (PosixSignal s in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP })
        {
            _registrations.Add(PosixSignalRegistration.Create(s, context =>
            {
                context.Cancel = true; // we stop, in order, ourselves
                Interlocked.CompareExchange(ref _signal, Number(context.Signal), 0);
                _stop.Cancel();
            }));
        }
    }

    public CancellationToken Token => _stop.Token;

    /// <summary>The signal received first (2, 15 or 1), or 0 before any.</summary>
    public int Signal => Volatile.Read(ref _signal);

    private static int Number(PosixSignal s) => s switch
    {
        PosixSignal.SIGHUP => 1,
        PosixSignal.SIGINT => 2,
        PosixSignal.SIGTERM => 15,
        _ => 15,
    };

    public void Dispose()
    {
        foreach (PosixSignalRegistration r in _registrations) r.Dispose();
        _stop.Dispose();
    }
}
