import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const NATIVE = fileURLToPath(new URL('../src/transport/native.js', import.meta.url));

// A tunnel's pattern: 64 KiB buffers filled and dropped, the garbage collector freeing them in batches.
// Prints the page faults it took, after the warm-up.
const churn = (keep: boolean) => `
import { keepFreedMemory } from ${JSON.stringify(NATIVE)};
import { readFileSync } from 'node:fs';
const faults = () => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
${keep ? 'if (!keepFreedMemory()) throw new Error("malloc_tune.node did not load");' : ''}
const round = () => { for (let i = 0; i < 4000; i++) Buffer.allocUnsafe(65536).fill(i); };
round();
const f0 = faults();
for (let r = 0; r < 5; r++) round();
process.stdout.write(String(faults() - f0));
`;

const faultsOf = (keep: boolean) => Number(execFileSync(process.execPath, ['--input-type=module', '-e', churn(keep)], { encoding: 'utf8', timeout: 60_000 }));

test('malloc_tune keeps freed buffers for reuse: far fewer page faults for the same churn', { skip: process.platform !== 'linux' && 'glibc only' }, () => {
  const without = faultsOf(false);
  const kept = faultsOf(true);
  // 1.3 GB of 64 KiB buffers: without it glibc hands freed pages back and faults them in again.
  assert.ok(kept * 4 < without, `page faults with keepFreedMemory ${kept}, without ${without}`);
});
