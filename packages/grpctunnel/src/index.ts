/**
 * grpctunnel: gRPC over gRPC for Node.js, wire-compatible with
 * github.com/jhump/grpctunnel.
 *
 * @packageDocumentation
 */

export { TUNNEL_CHANNEL_OPTIONS } from './grpc/client/channel-options.js';
export type { ClientHttp2WindowOptions } from './grpc/client/client-http2-window.js';
export type { ClientKeepaliveOptions } from './grpc/client/client-keepalive.js';
export { type ClientConstructor, createTunnelClient } from './grpc/client/create-client.js';
export { type OpenTunnelOptions, openTunnel } from './grpc/client/open-tunnel.js';
export {
  TunnelConnection,
  type TunnelConnectionEvents,
  type TunnelConnectionOptions,
  type TunnelConnectionTls,
  type TunnelDisconnectReason,
} from './grpc/client/raw/connection.js';
export type { TunnelChannel, TunnelChannelEvents, TunnelCloseStatus } from './grpc/client/tunnel-channel.js';
export { getTunnelChannel, getTunnelInfo, type HasAuthContext } from './grpc/context.js';
export {
  DEFAULT_KEEPALIVE_TIME_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  type KeepaliveOptions,
} from './grpc/keepalive.js';
export type { ServiceHost, ShutdownOptions } from './grpc/server/service-host.js';
export type { TunnelServerOptions } from './grpc/server/tunnel-server-session.js';
export type { AuthContext, TunnelInfo } from './grpc/tunnel-info.js';
export type { TunnelOptions } from './grpc/tunnel-options.js';
export {
  TunnelServiceHandler,
  type TunnelServiceHandlerEvents,
  type TunnelServiceHandlerOptions,
} from './handler/tunnel-service-handler.js';
export type { ReverseTunnel } from './pool/reverse-tunnel.js';
export type { TunnelPool, WaitForReadyOptions } from './pool/tunnel-pool.js';
export { createProxyHandler, type ProxyHandlerOptions } from './proxy/proxy-handler.js';
export type { BackoffOptions } from './reverse/backoff.js';
export {
  type KeepOpenOptions,
  type RetryEvent,
  ReverseTunnelServer,
  type ReverseTunnelServerEvents,
  type ReverseTunnelServerOptions,
  type ServeOptions,
  type ServeResult,
} from './reverse/reverse-tunnel-server.js';
