#!/usr/bin/env pwsh
# Build tasks for the engine. Runs anywhere through `dotnet tool restore; dotnet pwsh ./build.ps1 <task>`.
#   build      compile the solution (Release)
#   test       run every test project (CPU accelerator; no GPU needed)
#   publish    self-contained linux-x64 single-file `engine` for GPU hosts (into ./publish, or -Out)
#   native     build native/ with CMake: the fake NCCL for tests, and the NVTX shim where a CUDA toolkit is installed
#   bench      run the kernel benchmarks on the default device
#   gpu-check  the one prepared command for a GPU host (see docs/GPU.md): -Out DIR, -Minutes N
param(
    [Parameter(Position = 0)][ValidateSet('build', 'test', 'publish', 'native', 'bench', 'gpu-check')]
    [string]$Task = 'build',
    [string]$Out = '',
    [int]$Minutes = 7,
    [string]$Configuration = 'Release'
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot

function Invoke-Step([string]$what, [scriptblock]$block) {
    Write-Host "==> $what"
    & $block
    if ($LASTEXITCODE -ne 0) { throw "$what failed with exit code $LASTEXITCODE" }
}

switch ($Task) {
    'build' {
        Invoke-Step 'dotnet build' { dotnet build Engine.sln -c $Configuration }
    }
    'test' {
        Invoke-Step 'dotnet test' { dotnet test Engine.sln -c $Configuration }
    }
    'publish' {
        if (-not $Out) { $Out = Join-Path $PSScriptRoot 'publish' }
        Invoke-Step 'dotnet publish (linux-x64, self-contained, single file)' {
            dotnet publish src/Runner/Engine.Runner.csproj -c Release -r linux-x64 --self-contained true `
                -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true `
                -p:IncludeNativeLibrariesForSelfExtract=true -p:InvariantGlobalization=true -o $Out
        }
        Write-Host "published: $(Join-Path $Out 'engine')"
    }
    'native' {
        $build = Join-Path $PSScriptRoot 'native/build'
        Invoke-Step 'cmake configure' { cmake -S native -B $build -DCMAKE_BUILD_TYPE=Release }
        Invoke-Step 'cmake build' { cmake --build $build -j }
    }
    'bench' {
        Invoke-Step 'engine bench kernels' { dotnet run --project src/Runner -c Release -- bench kernels }
    }
    'gpu-check' {
        # Publishes the single-file engine if it is not there yet (needs the .NET SDK), then runs the
        # prepared check. On a GPU host without .NET, run `bash tools/gpu-check.sh OUT MINUTES` directly.
        if (-not $Out) { $Out = Join-Path $PSScriptRoot 'gpu-out' }
        if (-not (Test-Path (Join-Path $PSScriptRoot 'publish/engine'))) { & $PSCommandPath publish }
        & bash (Join-Path $PSScriptRoot 'tools/gpu-check.sh') $Out $Minutes
        exit $LASTEXITCODE
    }
}
