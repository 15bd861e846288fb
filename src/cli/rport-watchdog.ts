#!/usr/bin/env node
import { runMain } from './main.js';
import { watchdogMain } from './watchdog-command.js';

runMain('rport-watchdog', () => watchdogMain(process.argv.slice(2)));
