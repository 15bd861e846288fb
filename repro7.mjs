import { controlTarget } from '/work/wt/fuzz/dist/test/fuzz/control-target.js';
process.on('unhandledRejection', (e) => console.log('UNHANDLED', e.message));
await controlTarget.run(Buffer.from('\x00{"method":"connect"}\n'));
await new Promise((r) => setTimeout(r, 100));
console.log('done');
