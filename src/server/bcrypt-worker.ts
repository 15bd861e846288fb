// Runs bcrypt comparisons off the server's event loop (see BcryptPool): one job at a time per worker.
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

parentPort!.on('message', (job: { id: number; password: string; hash: string }) => {
  let ok = false;
  try {
    ok = bcrypt.compareSync(job.password, job.hash);
  } catch {
    // a malformed hash matches nothing
  }
  parentPort!.postMessage({ id: job.id, ok });
});
