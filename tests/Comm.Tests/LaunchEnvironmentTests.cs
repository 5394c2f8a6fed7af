using System.Collections;

namespace Engine.Comm.Tests;

public class LaunchEnvironmentTests
{
    private static Hashtable Vars(params (string, string)[] kv)
    {
        var h = new Hashtable();
        foreach ((string k, string v) in kv) h[k] = v;
        return h;
    }

    [Fact]
    public void NoVariablesMeansASingleProcess()
        => Assert.Equal(LaunchEnvironment.Single, LaunchEnvironment.FromVariables(Vars()));

    [Fact]
    public void ReadsTorchrunsVariables()
    {
        var env = LaunchEnvironment.FromVariables(Vars(("RANK", "5"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1"), ("LOCAL_WORLD_SIZE", "4"),
            ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")));
        Assert.Equal((5, 8, 1, 4, "10.0.0.1", 29500, 29500), (env.Rank, env.WorldSize, env.LocalRank, env.LocalWorldSize, env.MasterAddr, env.MasterPort, env.StorePort));
    }

    [Fact]
    public void UnderTorchrunsAgentStoreOurStoreMovesToTheNextPort()
    {
        var env = LaunchEnvironment.FromVariables(Vars(("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True")));
        Assert.Equal(29501, env.StorePort);
    }

    [Theory]
    [InlineData("3", "2", "29500", "RANK=3 is outside")]
    [InlineData("0", "x", "29500", "WORLD_SIZE='x' is not an integer")]
    [InlineData("0", "2", "0", "MASTER_PORT=0")]
    [InlineData("0", "2", "", "MASTER_PORT is not set")]
    public void BadVariablesNameTheVariable(string rank, string world, string port, string expected)
    {
        var vars = Vars(("RANK", rank), ("WORLD_SIZE", world), ("MASTER_ADDR", "127.0.0.1"));
        if (port.Length > 0) vars["MASTER_PORT"] = port;
        var e = Assert.Throws<ArgumentException>(() => LaunchEnvironment.FromVariables(vars));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingMasterAddrIsNamed()
    {
        var e = Assert.Throws<ArgumentException>(() => LaunchEnvironment.FromVariables(Vars(("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1234"))));
        Assert.Contains("MASTER_ADDR", e.Message);
    }
}
