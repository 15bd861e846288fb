export { TunnelManager } from './manager.js';
export { defaultBindNote } from './policy.js';
export type { Options, TunnelOptions } from './options.js';
export {
  TunnelError,
  type ClientLink,
  type ClientWhere,
  type Endpoint,
  type Forward,
  type Tunnel,
  type TunnelErrorCode,
  type TunnelRequest,
} from './tunnel.js';
