namespace Engine.Tests;

/// <summary>xunit theory data from tuples (xunit 2.9's TheoryData of two or more columns takes rows one Add at a time).</summary>
public static class TheoryRows
{
    public static TheoryData<T1, T2> Of<T1, T2>(IEnumerable<(T1, T2)> rows)
    {
        var data = new TheoryData<T1, T2>();
        foreach (var (a, b) in rows) data.Add(a, b);
        return data;
    }

    public static TheoryData<T1, T2, T3, T4, T5, T6, T7> Of<T1, T2, T3, T4, T5, T6, T7>(IEnumerable<(T1, T2, T3, T4, T5, T6, T7)> rows)
    {
        var data = new TheoryData<T1, T2, T3, T4, T5, T6, T7>();
        foreach (var (a, b, c, d, e, f, g) in rows) data.Add(a, b, c, d, e, f, g);
        return data;
    }
}
