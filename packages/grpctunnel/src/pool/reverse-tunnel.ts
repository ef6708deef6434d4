import type { TunnelChannel, TunnelChannelImpl } from '../grpc/client/tunnel-channel.js';
import type { TunnelInfo } from '../grpc/tunnel-info.js';

/**
 * One open reverse tunnel, as the network server that accepted it sees it.
 * `K` is the type of its affinity key (what the handler's `affinityKey`
 * option returns).
 */
export interface ReverseTunnel<K = unknown> {
  /** Calls through this one tunnel; `close()` ends it. */
  readonly channel: TunnelChannel;
  /** Its affinity key (what the handler's `affinityKey` option returned; undefined without one). */
  readonly key: K;
  /** The tunnel RPC's request metadata, peer and auth context. */
  readonly info: TunnelInfo;
  /** When the tunnel became ready. */
  readonly openedAt: Date;
}

/** A reverse tunnel as the pools hold it: with the channel's implementation, which their calls run on. */
export interface PooledTunnel<K = unknown> extends ReverseTunnel<K> {
  readonly channel: TunnelChannelImpl;
}
