#!/usr/bin/env node
// One executable for the client and its watchdog, so a package carries Node once: `rport watchdog ...`, or
// rport called as rport-watchdog (the link the packages install; rport-watchdog.cmd on Windows). Each
// command's code is loaded only when it runs.
import { basename } from 'node:path';
import { runMain } from './main.js';

type Command = (argv: string[]) => number | Promise<number>;

const SUBCOMMANDS: Record<string, () => Promise<Command>> = {
  init: async () => (await import('./init.js')).initCommand,
  '--init': async () => (await import('./init.js')).initCommand,
  service: async () => (await import('../service/windows.js')).serviceCommand,
};

/** The name it was called by: argv[0] as given (process.execPath is the link's target). */
const WATCHDOG_NAME = 'rport-watchdog';
const calledAs = basename(process.argv0).replace(/\.exe$/i, '');
const argv = process.argv.slice(2);

if (calledAs === WATCHDOG_NAME || argv[0] === 'watchdog') {
  const args = calledAs === WATCHDOG_NAME ? argv : argv.slice(1);
  runMain(WATCHDOG_NAME, async () => (await import('./watchdog-command.js')).watchdogMain(args));
} else {
  runMain('rport', async () => {
    const sub = SUBCOMMANDS[argv[0] ?? ''];
    if (sub) return (await sub())(argv.slice(1));
    return (await import('./client-command.js')).clientMain();
  });
}
