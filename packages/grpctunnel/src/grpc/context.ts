import type { TunnelChannel } from './client/tunnel-channel.js';
import type { AuthContext, TunnelInfo } from './tunnel-info.js';

// Which tunnel carried a call travels inside the call's auth context: every
// layer of grpc-js (call objects, client and server interceptors) hands
// getAuthContext() down to the call beneath it, so the answer is reachable
// from anything a user holds, through public grpc-js API only.

const TUNNEL_INFO = Symbol('grpctunnel.tunnelInfo');
const TUNNEL_CHANNEL = Symbol('grpctunnel.tunnelChannel');

type Tagged = AuthContext & { readonly [TUNNEL_INFO]?: TunnelInfo; readonly [TUNNEL_CHANNEL]?: TunnelChannel };

/** Anything with grpc-js's `getAuthContext()`: server call objects, intercepting calls, client calls. */
export interface HasAuthContext {
  /** grpc-js's auth context of the call; for tunneled calls it also says which tunnel carried it. */
  getAuthContext(): unknown;
}

/** The auth context that tunneled server calls report: the tunnel's own, tagged with the tunnel. */
export function serverAuthContext(info: TunnelInfo): AuthContext {
  return Object.defineProperty({ ...info.authContext }, TUNNEL_INFO, { value: info, enumerable: false });
}

/** The auth context that client calls through a tunnel report, tagged with the channel. */
export function clientAuthContext(authContext: AuthContext, channel: TunnelChannel): AuthContext {
  return Object.defineProperty({ ...authContext }, TUNNEL_CHANNEL, { value: channel, enumerable: false });
}

function tagged(call: HasAuthContext | null | undefined): Tagged | undefined {
  if (!call || typeof call.getAuthContext !== 'function') return undefined;
  const context = call.getAuthContext();
  return context !== null && typeof context === 'object' ? (context as Tagged) : undefined;
}

/**
 * The tunnel that carried a tunneled call, seen from the serving side: pass
 * the call object a handler received (`call` of any of the four kinds) or
 * the call a server interceptor wraps. Undefined for a call that did not
 * come through a tunnel.
 *
 * @example
 * const token = getTunnelInfo(call)?.metadata.get('authorization')[0];
 */
export function getTunnelInfo(call: HasAuthContext): TunnelInfo | undefined {
  return tagged(call)?.[TUNNEL_INFO];
}

/**
 * The tunnel channel that carried a client call (the call object grpc-js
 * returned, e.g. a `ClientUnaryCall`): useful with pools, where each call
 * may take a different tunnel. Undefined before the call has started on a
 * tunnel, and for calls that do not go through one. Needs grpc-js 1.12 or later
 * (client calls with `getAuthContext()`).
 */
export function getTunnelChannel(call: HasAuthContext): TunnelChannel | undefined {
  return tagged(call)?.[TUNNEL_CHANNEL];
}
