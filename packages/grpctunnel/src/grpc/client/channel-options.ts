import type { ChannelOptions } from '@grpc/grpc-js';
import { DEFAULT_HTTP2_WINDOW_SIZE } from '../http2-window.js';
import { LIBRARY_USER_AGENT } from './user-agent.js';

/**
 * grpc-js channel options for a connection that carries tunnels: pass them
 * when you create the client or channel you open tunnels on (forward) or
 * give to a {@link ReverseTunnelServer} (reverse).
 *
 * One HTTP/2 stream carries a whole tunnel, so HTTP/2's default 64 KiB
 * receive window would hold everything the server sends through it to
 * 64 KiB per round trip. `openTunnel` and `ReverseTunnelServer` raise the
 * windows of the connection themselves when a tunnel opens (their
 * `http2WindowSize` option, 1 MiB by default), so these options are no
 * longer needed for speed; they set the same window from the connection's
 * first byte, which also covers connections whose HTTP/2 session cannot be
 * reached through grpc-js's call objects. The server side needs nothing:
 * the {@link TunnelServiceHandler} raises its own windows. They also name
 * this library first in the user agent
 * (`grpctunnel-node/<version> grpc-node-js/<version>`), as a
 * {@link TunnelConnection} does.
 */
export const TUNNEL_CHANNEL_OPTIONS: Readonly<ChannelOptions> = Object.freeze({
  'grpc-node.flow_control_window': DEFAULT_HTTP2_WINDOW_SIZE,
  'grpc.primary_user_agent': LIBRARY_USER_AGENT,
});
