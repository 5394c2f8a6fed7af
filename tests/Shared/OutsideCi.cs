namespace Engine.Tests;

/// <summary>
/// The one rule for tests that need something this machine may lack (NVIDIA's tools, root and iproute2): where it
/// is missing they are skipped, saying why, but only outside CI; in CI (CI set) they run and fail instead, so a
/// missing install step cannot pass as a skip.
/// </summary>
public static class OutsideCi
{
    public static bool IsCi => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"));

    /// <summary>The skip reason for a test whose requirement is missing (<paramref name="missing"/> says why), or null when it must run.</summary>
    public static string? SkipReason(string? missing) => missing is not null && !IsCi ? missing : null;
}
