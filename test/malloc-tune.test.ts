import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ACCELERATION = fileURLToPath(new URL('../src/transport/acceleration.js', import.meta.url));

// The add-on is built and loads where it matters (glibc Linux), in a process of its own since it changes
// that process's allocator. What it saves is measured by the bench, not here: rportd's page faults per MB
// of tunnel traffic, 181 without it, 3 with it (BENCHMARKS.md); a micro-benchmark of freed buffers depends
// on when V8's sweeper frees them and could not fail reliably.
const probe = `
import { createRequire } from 'node:module';
import { keepFreedMemory, nativeAcceleration } from ${JSON.stringify(ACCELERATION)};
const m = createRequire(${JSON.stringify(ACCELERATION)})('../../../build/Release/malloc_tune.node');
process.stdout.write(JSON.stringify({ kept: keepFreedMemory(), reported: nativeAcceleration().heapKept, release: typeof m.releaseFreedMemory() }));
`;

test(
  'malloc_tune loads on glibc Linux: freed heap is kept for tunnel buffers, and can be given back',
  { skip: process.platform !== 'linux' && 'glibc only' },
  () => {
    const out = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8', timeout: 60_000 }),
    );
    assert.deepEqual(out, { kept: true, reported: true, release: 'boolean' });
  },
);
