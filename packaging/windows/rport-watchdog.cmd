@echo off
rem rport-watchdog for Windows: rport.exe is both the client and its watchdog (rport.exe watchdog ...).
"%~dp0rport.exe" watchdog %*
exit /b %ERRORLEVEL%
