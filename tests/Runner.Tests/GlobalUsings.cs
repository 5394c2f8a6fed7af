global using Engine.Nn.Parallel;
