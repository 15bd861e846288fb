/**
 * Where BcryptPool's worker comes from: the compiled bcrypt-worker.js beside this file. The release build
 * replaces this module with the worker's bundled code, since a single executable has no files beside it.
 */
export const BCRYPT_WORKER: { url?: URL; code?: string } = { url: new URL('./bcrypt-worker.js', import.meta.url) };
