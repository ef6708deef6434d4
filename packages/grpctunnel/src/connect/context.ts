import { type ContextValues, createContextKey, type HandlerContext } from '@connectrpc/connect';
import type { TunnelInfo } from '../grpc/tunnel-info.js';

/**
 * The context value under which Connect handlers served through a tunnel
 * find the tunnel that carried the call (undefined for calls that did not
 * come through one). Read it with {@link getTunnelInfoFromContext}, or
 * `context.values.get(tunnelInfoKey)`, also from Connect interceptors.
 */
export const tunnelInfoKey = createContextKey<TunnelInfo | undefined>(undefined, {
  description: 'grpctunnel tunnel info',
});

/**
 * The tunnel that carried a call to a Connect handler served with
 * {@link connectServiceDefinition} or {@link addConnectService}: the
 * Connect counterpart of `getTunnelInfo(call)`. Undefined for a call that
 * did not come through a tunnel.
 *
 * @example
 * const agent = getTunnelInfoFromContext(ctx)?.metadata.get('x-agent-id')[0];
 */
export function getTunnelInfoFromContext(context: HandlerContext | { values: ContextValues }): TunnelInfo | undefined {
  return context.values.get(tunnelInfoKey);
}
