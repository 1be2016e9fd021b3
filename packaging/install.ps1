# Installs `bridge` from a release of mcp-tunnel on Windows (the relay is released for
# Linux, macOS and as a container image):
#
#   powershell -ExecutionPolicy Bypass -c "irm https://github.com/mcp-tunnel/mcp-tunnel/releases/latest/download/install.ps1 | iex"
#
# It picks the archive for this machine's processor, checks it against the release's
# SHA256SUMS (refusing a mismatch), and puts bridge.exe in $Prefix\bin (default
# %USERPROFILE%\.local\bin), which it adds to the user's PATH. MCP_TUNNEL_DOWNLOAD_URL
# overrides the folder holding the archives and SHA256SUMS (a mirror, or a local dist\);
# MCP_TUNNEL_VERSION picks a version.
param(
    [string]$Prefix = (Join-Path $env:USERPROFILE ".local")
)
$ErrorActionPreference = "Stop"
Set-StrictMode -Version 3.0

$Version = if ($env:MCP_TUNNEL_VERSION) { $env:MCP_TUNNEL_VERSION } else { "@VERSION@" }
$Base = if ($env:MCP_TUNNEL_DOWNLOAD_URL) { $env:MCP_TUNNEL_DOWNLOAD_URL.TrimEnd("/") } else {
    "https://github.com/mcp-tunnel/mcp-tunnel/releases/download/v$Version"
}
$Arch = $env:PROCESSOR_ARCHITEW6432
if (-not $Arch) { $Arch = $env:PROCESSOR_ARCHITECTURE }
$Target = switch ($Arch) {
    "AMD64" { "x86_64-pc-windows-gnu" }
    "ARM64" { "aarch64-pc-windows-gnullvm" }
    default { throw "install.ps1: no release for the $Arch processor; build from source" }
}
$Binaries = @("bridge")

$Tmp = Join-Path ([System.IO.Path]::GetTempPath()) ("mcp-tunnel-" + [guid]::NewGuid())
New-Item -ItemType Directory -Path $Tmp | Out-Null
try {
    $Sums = Join-Path $Tmp "SHA256SUMS"
    Invoke-WebRequest -UseBasicParsing -Uri "$Base/SHA256SUMS" -OutFile $Sums
    $Bin = Join-Path $Prefix "bin"
    New-Item -ItemType Directory -Force -Path $Bin | Out-Null
    foreach ($Name in $Binaries) {
        $Archive = "$Name-$Version-$Target.zip"
        Write-Host "install.ps1: downloading $Archive"
        $Zip = Join-Path $Tmp $Archive
        Invoke-WebRequest -UseBasicParsing -Uri "$Base/$Archive" -OutFile $Zip
        $Want = Get-Content $Sums | ForEach-Object {
            $f = $_ -split "\s+", 2
            if ($f.Count -eq 2 -and $f[1].TrimStart("*") -eq $Archive) { $f[0].ToLower() }
        } | Select-Object -First 1
        if (-not $Want) { throw "install.ps1: SHA256SUMS has no line for $Archive" }
        $Got = (Get-FileHash -Algorithm SHA256 -Path $Zip).Hash.ToLower()
        if ($Got -ne $Want) {
            throw "install.ps1: checksum mismatch for $Archive (expected $Want, got $Got): not installed"
        }
        $Out = Join-Path $Tmp "$Name.d"
        Expand-Archive -Path $Zip -DestinationPath $Out
        Move-Item -Force -Path (Join-Path $Out "$Name.exe") -Destination (Join-Path $Bin "$Name.exe")
        Write-Host "install.ps1: installed $(Join-Path $Bin "$Name.exe")"
    }
    $UserPath = [Environment]::GetEnvironmentVariable("Path", "User")
    if (-not (($UserPath -split ";") -contains $Bin)) {
        [Environment]::SetEnvironmentVariable("Path", "$Bin;$UserPath", "User")
        Write-Host "install.ps1: added $Bin to your PATH (open a new terminal)"
    }
} finally {
    Remove-Item -Recurse -Force $Tmp -ErrorAction SilentlyContinue
}
