<#
.SYNOPSIS
  RPort watchdog for Windows: restarts the rport service when its client hangs.

.DESCRIPTION
  The Windows service has no built-in watchdog. This script, run every 5 minutes and at start-up by a
  scheduled task as SYSTEM (see -Register), reads the client's state.json and restarts the service when
  it hangs. Its rules are the same as `rport-watchdog run --once` (src/supervisor/verdict.ts and
  supervisor.ts):
    - hung: now is past next_update_by_ts + Grace; for files without it (older RPort clients): older
      than the heartbeat budget from rport.conf (keep_alive + keep_alive_timeout + 1s, or
      max_retry_interval + connect_timeout + 1s, whichever is longer); -Threshold overrides both.
      A next_update_by_ts further after last_update_ts than the budget (1 hour without rport.conf) is
      not believed: the deadline is last_update_ts plus the budget.
    - missing, unreadable or corrupt state.json, a state.json that is not a regular file or is larger
      than 64 KiB, or watchdog_integration off: "unknown", no action.
    - a restart only after 2 hung checks in a row; never when the service is not Running (stopped on
      purpose); at most -MaxRestartsPerHour restarts in any hour, with a pause of 2^k checks after the
      k-th restart.
  Every decision goes to the Windows Event Log (Application, source RPort-Watchdog) and to
  rport-watchdog.log beside state.json.

  NOTE: PowerShell cannot run on the machines where this project is built and tested, so this script
  has NOT been run by the project's tests. The rules it shares with rport-watchdog are the cases in
  test/watchdog-verdict-cases.json, which the TypeScript tests run; run them here with -TestCases.

.EXAMPLE
  .\rport-watchdog.ps1 -Register            # install the scheduled task (run as Administrator)
  .\rport-watchdog.ps1 -State               # print the verdict; exit 0 healthy, 1 hung, 3 unknown
  .\rport-watchdog.ps1                      # one check (what the scheduled task runs)
  .\rport-watchdog.ps1 -Unregister
  .\rport-watchdog.ps1 -TestCases ..\..\test\watchdog-verdict-cases.json
#>
[CmdletBinding()]
param(
  [switch]$Register,
  [switch]$Unregister,
  [switch]$State,
  [int]$Threshold = 0,
  [string]$ConfigFile = 'C:\Program Files\rport\rport.conf',
  [string]$StateFile = '',
  [string]$Service = 'rport',
  [int]$Grace = 10,
  [int]$MaxRestartsPerHour = 3,
  [int]$IntervalSec = 300,
  [string]$TestCases = ''
)

$ErrorActionPreference = 'Stop'
$TaskName = 'RPort-Watchdog'
$EventSource = 'RPort-Watchdog'
$StrikesToRestart = 2
$HourSec = 3600
$MaxPromiseSec = 3600
$MaxStateBytes = 65536

# --- rport.conf: the few keys this needs, from a TOML file with RPort's sections ----------------------
function ConvertFrom-GoDuration([string]$text) {
  # "3m", "30s", "1h30m", "250ms", "0s" -> seconds (double); $null when not a duration
  $t = $text.Trim()
  if ($t -eq '0') { return 0.0 }
  $units = @{ 'ns' = 1e-9; 'us' = 1e-6; 'µs' = 1e-6; 'ms' = 1e-3; 's' = 1.0; 'm' = 60.0; 'h' = 3600.0 }
  $ms = [regex]::Matches($t, '(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)')
  if ($ms.Count -eq 0 -or (($ms | ForEach-Object { $_.Value }) -join '') -ne $t) { return $null }
  $sum = 0.0
  foreach ($m in $ms) { $sum += [double]::Parse($m.Groups[1].Value, [Globalization.CultureInfo]::InvariantCulture) * $units[$m.Groups[2].Value] }
  return $sum
}

function Read-RportConf([string]$path) {
  $conf = @{ data_dir = 'C:\Program Files\rport\data'; keep_alive = 180.0; keep_alive_timeout = 30.0; max_retry_interval = 300.0; connect_timeout = 20.0; watchdog_integration = $false }
  if (-not (Test-Path -LiteralPath $path)) { return $null }
  $section = ''
  foreach ($raw in Get-Content -LiteralPath $path) {
    $line = $raw.Trim()
    if ($line -match '^\[([^\]]+)\]') { $section = $Matches[1].Trim(); continue }
    if ($line -notmatch '^([A-Za-z0-9_]+)\s*=\s*(.+?)\s*(#.*)?$') { continue }
    $key = $Matches[1]; $value = $Matches[2].Trim().Trim('"').Trim("'")
    if ($section -eq 'client' -and $key -eq 'data_dir') { $conf.data_dir = $value -replace '\\\\', '\' }
    elseif ($section -eq 'connection' -and $key -eq 'watchdog_integration') { $conf.watchdog_integration = ($value -eq 'true') }
    elseif ($section -eq 'connection' -and $conf.ContainsKey($key)) {
      $d = ConvertFrom-GoDuration $value
      if ($null -ne $d) { $conf[$key] = $d }
    }
  }
  return $conf
}

function Get-BudgetSec($conf) {
  $connected = $conf.keep_alive + $conf.keep_alive_timeout + 1
  $reconnecting = $conf.max_retry_interval + $conf.connect_timeout + 1
  return [int][math]::Ceiling([math]::Max($connected, $reconnecting))
}

# --- the verdict: identical rules to src/supervisor/verdict.ts ---------------------------------------
function Get-Verdict($file, [long]$nowSec, [int]$thresholdSec, $budgetSec, [int]$graceSec) {
  # $file: @{ text = '...' } | @{ missing = $true } | @{ unreadable = 'reason' }
  if ($file.missing) { return @{ status = 'unknown'; reason = 'state.json does not exist: is watchdog_integration on and has the client ever started?' } }
  if ($file.unreadable) { return @{ status = 'unknown'; reason = "state.json cannot be read: $($file.unreadable)" } }
  try { $doc = $file.text | ConvertFrom-Json } catch { return @{ status = 'unknown'; reason = 'state.json is not valid JSON' } }
  if ($null -eq $doc -or $doc -isnot [psobject] -or $doc -is [array] -or $doc -is [string] -or $doc -is [ValueType]) { return @{ status = 'unknown'; reason = 'state.json is not a JSON object' } }
  $ts = $doc.last_update_ts
  if ($null -eq $ts -or -not ($ts -is [int] -or $ts -is [long] -or $ts -is [double] -or $ts -is [decimal])) { return @{ status = 'unknown'; reason = 'state.json has no numeric last_update_ts' } }
  $age = [long]($nowSec - $ts)
  $last = "last update ${age}s ago ($($doc.last_state): $($doc.last_message))"
  $base = @{ age = $age; pid = $doc.pid }
  if ($thresholdSec -gt 0) {
    if ($age -gt $thresholdSec) { return $base + @{ status = 'hung'; reason = "$last, over the threshold of ${thresholdSec}s" } }
    return $base + @{ status = 'healthy'; reason = "$last, within the threshold of ${thresholdSec}s" }
  }
  $promised = $doc.next_update_by_ts
  if ($null -ne $promised -and ($promised -is [int] -or $promised -is [long] -or $promised -is [double] -or $promised -is [decimal])) {
    # A healthy client never promises more than its heartbeat budget ahead: a later deadline is not believed.
    $limit = if ($null -ne $budgetSec) { $budgetSec } else { $MaxPromiseSec }
    $next = [math]::Min([double]$promised, [double]$ts + $limit)
    $capped = ''
    if ($next -lt $promised) {
      $what = if ($null -ne $budgetSec) { 'heartbeat budget' } else { 'believed without rport.conf' }
      $capped = " (its promise of $([long]($promised - $ts))s after the last update is beyond the ${limit}s $what)"
    }
    $overdue = [long]($nowSec - $next)
    if ($overdue -gt $graceSec) { return $base + @{ status = 'hung'; reason = "$last; it promised to write again by ${overdue}s ago$capped (grace ${graceSec}s)" } }
    return $base + @{ status = 'healthy'; reason = "$last; next update due within $(-$overdue)s$capped" }
  }
  if ($null -ne $budgetSec) {
    if ($age -gt $budgetSec) { return $base + @{ status = 'hung'; reason = "$last, older than the ${budgetSec}s that keep_alive and max_retry_interval allow" } }
    return $base + @{ status = 'healthy'; reason = "$last, within the ${budgetSec}s that keep_alive and max_retry_interval allow" }
  }
  return $base + @{ status = 'unknown'; reason = "$last, but the file has no next_update_by: pass -ConfigFile or -Threshold" }
}

function Read-StateFile([string]$path) {
  # Like rport-watchdog: only a regular file, and at most $MaxStateBytes of it (one byte more is read to
  # catch a file that grows); a device or pipe would block or never end.
  if (-not (Test-Path -LiteralPath $path)) { return @{ missing = $true } }
  try {
    $item = Get-Item -LiteralPath $path -Force
    if ($item -isnot [IO.FileInfo]) { return @{ unreadable = "$path is not a regular file" } }
    $stream = [IO.File]::Open($path, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::ReadWrite -bor [IO.FileShare]::Delete)
    try {
      $buf = New-Object byte[] ($MaxStateBytes + 1)
      $n = 0
      while ($n -lt $buf.Length) {
        $r = $stream.Read($buf, $n, $buf.Length - $n)
        if ($r -le 0) { break }
        $n += $r
      }
    } finally { $stream.Dispose() }
    if ($n -gt $MaxStateBytes) { return @{ unreadable = "$path is larger than $MaxStateBytes bytes, which no rport client writes" } }
    return @{ text = [Text.Encoding]::UTF8.GetString($buf, 0, $n) }
  } catch { return @{ unreadable = $_.Exception.Message } }
}

# --- logging: Event Log and a file --------------------------------------------------------------------
$script:LogFile = $null
function Write-Decision([string]$level, [int]$eventId, [string]$message) {
  $line = "{0} {1,-5} rport-watchdog: {2}" -f (Get-Date -Format 'yyyy-MM-dd HH:mm:ss.fff'), $level.ToUpper(), $message
  Write-Output $line
  if ($script:LogFile) { try { Add-Content -LiteralPath $script:LogFile -Value $line } catch { } }
  $type = @{ info = 'Information'; warn = 'Warning'; error = 'Error' }[$level]
  try {
    if ([Diagnostics.EventLog]::SourceExists($EventSource)) { Write-EventLog -LogName Application -Source $EventSource -EventId $eventId -EntryType $type -Message $message }
  } catch { }
}

# --- memory between runs: strikes and restart times -----------------------------------------------------
function Read-Memory([string]$path) {
  try {
    $m = Get-Content -LiteralPath $path -Raw | ConvertFrom-Json
    return @{ strikes = [int]$m.strikes; restarts = @($m.restarts | Where-Object { $_ -is [long] -or $_ -is [int] -or $_ -is [double] }) }
  } catch { return @{ strikes = 0; restarts = @() } }
}
function Save-Memory([string]$path, $m) {
  try {
    $tmp = "$path.$([guid]::NewGuid().ToString('N')).tmp"  # not a name another user could plant beforehand
    (@{ strikes = $m.strikes; restarts = @($m.restarts) } | ConvertTo-Json -Compress) | Set-Content -LiteralPath $tmp -Encoding UTF8
    Move-Item -LiteralPath $tmp -Destination $path -Force
  } catch { Write-Decision 'warn' 1009 "cannot save ${path}: $($_.Exception.Message); strikes are not remembered between runs" }
}

# --- -TestCases: run the shared cases against Get-Verdict ----------------------------------------------
if ($TestCases) {
  $suite = Get-Content -LiteralPath $TestCases -Raw | ConvertFrom-Json
  $failed = 0
  foreach ($c in $suite.cases) {
    $file = if ($c.missing) { @{ missing = $true } } elseif ($c.unreadable) { @{ unreadable = $c.unreadable } } else { @{ text = $c.text } }
    $budget = if ($null -ne $c.budget) { [int]$c.budget } else { $null }
    $threshold = if ($null -ne $c.threshold) { [int]$c.threshold } else { 0 }
    $v = Get-Verdict $file ([long]$c.now) $threshold $budget ([int]$c.grace)
    if ($v.status -ne $c.expect) { $failed++; Write-Output "FAIL $($c.name): expected $($c.expect), got $($v.status) ($($v.reason))" } else { Write-Output "ok   $($c.name)" }
  }
  Write-Output "$($suite.cases.Count - $failed) passed, $failed failed"
  exit ([int]($failed -gt 0))
}

# --- -Register / -Unregister ----------------------------------------------------------------------------
if ($Register) {
  if (-not [Diagnostics.EventLog]::SourceExists($EventSource)) { New-EventLog -LogName Application -Source $EventSource }
  $arguments = "-NoProfile -NonInteractive -ExecutionPolicy Bypass -File `"$PSCommandPath`" -ConfigFile `"$ConfigFile`" -Service `"$Service`""
  $action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument $arguments
  $every5 = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(1) -RepetitionInterval (New-TimeSpan -Minutes 5)
  $atStart = New-ScheduledTaskTrigger -AtStartup
  $atStart.Delay = 'PT5M'
  $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
  $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit (New-TimeSpan -Minutes 2) -MultipleInstances IgnoreNew -StartWhenAvailable
  Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger @($every5, $atStart) -Principal $principal -Settings $settings -Force | Out-Null
  Write-Decision 'info' 1010 "scheduled task $TaskName registered: every 5 minutes and at start-up, as SYSTEM, watching $ConfigFile"
  exit 0
}
if ($Unregister) {
  Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false -ErrorAction SilentlyContinue
  Write-Output "scheduled task $TaskName removed"
  exit 0
}

# --- one check ------------------------------------------------------------------------------------------
$conf = Read-RportConf $ConfigFile
$budget = $null
if ($conf) { $budget = Get-BudgetSec $conf }
if (-not $StateFile) {
  $dataDir = if ($conf) { $conf.data_dir } else { 'C:\Program Files\rport\data' }
  $StateFile = Join-Path $dataDir 'state.json'
}
$script:LogFile = Join-Path (Split-Path -Parent $StateFile) 'rport-watchdog.log'
$memoryFile = Join-Path (Split-Path -Parent $StateFile) 'rport-watchdog.json'
$now = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()

if ($conf -and -not $conf.watchdog_integration) {
  $verdict = @{ status = 'unknown'; reason = "watchdog_integration is off in ${ConfigFile}: the client writes no state.json (set [connection] watchdog_integration = true)" }
} else {
  $verdict = Get-Verdict (Read-StateFile $StateFile) $now $Threshold $budget $Grace
}
$exitCode = @{ healthy = 0; hung = 1; unknown = 3 }[$verdict.status]

if ($State) {
  Write-Output "$($verdict.status): $($verdict.reason)"
  $m = Read-Memory $memoryFile
  Write-Output "strikes: $($m.strikes); restarts in the last hour: $(@($m.restarts | Where-Object { $now - $_ -lt $HourSec }).Count)"
  exit $exitCode
}

$memory = Read-Memory $memoryFile
if ($verdict.status -eq 'healthy') {
  Write-Decision 'info' 1000 "healthy: $($verdict.reason)"
  $memory.strikes = 0
} elseif ($verdict.status -eq 'unknown') {
  Write-Decision 'warn' 1004 "cannot tell: $($verdict.reason); nothing to do"
  $memory.strikes = 0
} else {
  $memory.strikes++
  $recent = @($memory.restarts | Where-Object { $now - $_ -lt $HourSec })
  $svc = Get-Service -Name $Service -ErrorAction SilentlyContinue
  if ($memory.strikes -lt $StrikesToRestart) {
    Write-Decision 'warn' 1001 "hung (strike $($memory.strikes) of $StrikesToRestart): $($verdict.reason); checking again before restarting"
  } elseif ($recent.Count -ge $MaxRestartsPerHour) {
    Write-Decision 'error' 1003 "hung: $($verdict.reason); NOT restarting: $($recent.Count) restarts in the last hour reached -MaxRestartsPerHour $MaxRestartsPerHour; look at the client's log"
  } elseif ($recent.Count -gt 0 -and ($now - ($recent | Measure-Object -Maximum).Maximum) -lt [math]::Ceiling($IntervalSec * [math]::Pow(2, $recent.Count))) {
    Write-Decision 'warn' 1005 "hung: $($verdict.reason); holding off after $($recent.Count) recent restart(s)"
  } elseif ($null -eq $svc -or $svc.Status -ne 'Running') {
    Write-Decision 'warn' 1006 "hung: $($verdict.reason); but service $Service is not Running ($($svc.Status)): stopped on purpose, not restarting"
  } else {
    Write-Decision 'error' 1002 "hung (strike $($memory.strikes) of $StrikesToRestart): $($verdict.reason); restarting service $Service"
    try {
      Restart-Service -Name $Service -Force
      Write-Decision 'info' 1007 "service $Service restarted"
    } catch {
      # A hung service may not stop within its timeout: end its process so the restart can proceed.
      Write-Decision 'error' 1008 "Restart-Service failed: $($_.Exception.Message); stopping process $($verdict.pid) and starting the service"
      if ($verdict.pid) { Stop-Process -Id $verdict.pid -Force -ErrorAction SilentlyContinue }
      Start-Service -Name $Service
    }
    $memory.restarts = @($recent) + @($now)
    $memory.strikes = 0
  }
}
$memory.restarts = @($memory.restarts | Where-Object { $now - $_ -lt $HourSec })
Save-Memory $memoryFile $memory
exit $exitCode
