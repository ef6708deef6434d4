import type { ChannelOptions } from '@grpc/grpc-js';
import { DEFAULT_HTTP2_WINDOW_SIZE } from '../server/http2-window.js';

/**
 * grpc-js channel options for a connection that carries tunnels: pass them
 * when you create the client or channel you open tunnels on (forward) or
 * give to a {@link ReverseTunnelServer} (reverse).
 *
 * One HTTP/2 stream carries a whole tunnel, so HTTP/2's default 64 KiB
 * receive window holds everything the server sends through it (forward
 * tunnels' responses, reverse tunnels' requests) to 64 KiB per round trip.
 * A 1 MiB window roughly doubles streaming through a forward tunnel
 * (BENCHMARKS.md). It bounds what one stream of the connection can make
 * this process buffer. The server side needs nothing: the
 * {@link TunnelServiceHandler} raises its own windows (`http2WindowSize`),
 * by default to the same size.
 */
export const TUNNEL_CHANNEL_OPTIONS: Readonly<ChannelOptions> = Object.freeze({
  'grpc-node.flow_control_window': DEFAULT_HTTP2_WINDOW_SIZE,
});
