<#
.SYNOPSIS
  Installs the rport client on Windows from the release's rport-<version>-win-x64 folder: the Windows
  service (with recovery actions) and the PowerShell watchdog's scheduled task, all on the same paths.

.DESCRIPTION
  As Administrator, from the unpacked folder (tar -xzf rport-<version>-win-x64.tar.gz):
    1. copies rport.exe (the client and its watchdog: rport.exe watchdog, or rport-watchdog.cmd),
       rport-watchdog.cmd and rport-watchdog.ps1 to -Dir (C:\Program Files\rport);
    2. with -Server and -Auth: writes -Dir\rport.conf with `rport.exe init --force` (watchdog_integration
       on, data in -Dir\data) and limits it to SYSTEM and Administrators (it holds the password);
    3. `rport.exe service install` and `service start`: the service "rport" (WinSW wrapper, automatic
       start, restart after 15 s / 15 s / 60 s);
    4. `rport-watchdog.ps1 -Register`: the scheduled task RPort-Watchdog (every 5 minutes and at start-up,
       as SYSTEM) that restarts the service when the client hangs, reading the same rport.conf.
  -Uninstall undoes 4 and 3 and removes the executables; rport.conf and data stay.

  NOTE: PowerShell and Windows are not available where this project is built and tested, so this script
  has NOT been run by the project's tests; rport.exe's own parts (init, service --print) are tested.

.EXAMPLE
  .\install.ps1 -Server rport.example.com:8080 -Fingerprint SHA256:... -Auth client1:secret
  .\install.ps1 -Uninstall
#>
[CmdletBinding()]
param(
  [string]$Server = '',
  [string]$Fingerprint = '',
  [string]$Auth = '',
  [string]$Dir = 'C:\Program Files\rport',
  [switch]$Uninstall
)
$ErrorActionPreference = 'Stop'
$Conf = Join-Path $Dir 'rport.conf'
$Exe = Join-Path $Dir 'rport.exe'

function Invoke-Checked([string]$file, [string[]]$arguments) {
  & $file @arguments
  if ($LASTEXITCODE -ne 0) { throw "$file $($arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

if ($Uninstall) {
  $ps = Join-Path $Dir 'rport-watchdog.ps1'
  if (Test-Path -LiteralPath $ps) { & $ps -Unregister }
  if (Test-Path -LiteralPath $Exe) { Invoke-Checked $Exe @('service', 'uninstall') }
  foreach ($f in 'rport.exe', 'rport-watchdog.cmd', 'rport-watchdog.ps1') { Remove-Item -LiteralPath (Join-Path $Dir $f) -ErrorAction SilentlyContinue }
  Write-Output "rport removed; $Conf and $(Join-Path $Dir 'data') are kept"
  exit 0
}

New-Item -ItemType Directory -Force -Path $Dir, (Join-Path $Dir 'data') | Out-Null
foreach ($f in 'rport.exe', 'rport-watchdog.cmd', 'rport-watchdog.ps1') { Copy-Item -LiteralPath (Join-Path $PSScriptRoot $f) -Destination $Dir -Force }

if ($Server -or $Auth) {
  $initArgs = @('init', '--force', '-c', $Conf, '--server', $Server, '--auth', $Auth, '--data-dir', (Join-Path $Dir 'data'))
  if ($Fingerprint) { $initArgs += @('--fingerprint', $Fingerprint) }
  Invoke-Checked $Exe $initArgs
  # SYSTEM (the service) and Administrators only.
  Invoke-Checked 'icacls.exe' @($Conf, '/inheritance:r', '/grant:r', '*S-1-5-18:F', '*S-1-5-32-544:F')
} elseif (-not (Test-Path -LiteralPath $Conf)) {
  throw "$Conf does not exist: give -Server and -Auth (and -Fingerprint), or write it with rport.exe init"
}

Invoke-Checked $Exe @('service', 'install', '-c', $Conf)
Invoke-Checked $Exe @('service', 'start')
& (Join-Path $Dir 'rport-watchdog.ps1') -Register -ConfigFile $Conf -Service 'rport'
Write-Output "rport installed in $Dir: service 'rport' running, scheduled task RPort-Watchdog registered"
