import { createRequire } from 'node:module';

// Both versions are read once, when the library loads: a user agent is sent
// with every tunnel RPC, and neither version changes while the process runs.
const require = createRequire(import.meta.url);
const version = (path: string): string => (require(path) as { version: string }).version;

/** This library's product token, `grpctunnel-node/<version>`. */
export const LIBRARY_USER_AGENT = `grpctunnel-node/${version('../../../package.json')}`;

/**
 * The user agent of tunnel RPCs on a TunnelConnection: exactly what a grpc-js
 * client made with `TUNNEL_CHANNEL_OPTIONS` sends (that option set names this
 * library as grpc-js's `grpc.primary_user_agent`, and grpc-js adds its own
 * token after it), so a server cannot tell the two paths apart by it.
 */
export const TUNNEL_RPC_USER_AGENT = `${LIBRARY_USER_AGENT} grpc-node-js/${version('@grpc/grpc-js/package.json')}`;
