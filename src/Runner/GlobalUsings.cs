global using Engine.Nn;
global using Engine.Nn.Parallel;
