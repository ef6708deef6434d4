import type { TunnelChannel } from '../grpc/client/tunnel-channel.js';
import type { TunnelInfo } from '../grpc/server/tunnel-info.js';

/** One open reverse tunnel, as the network server that accepted it sees it. */
export interface ReverseTunnel {
  /** Calls through this one tunnel; `close()` ends it. */
  readonly channel: TunnelChannel;
  /** Its affinity key (what the handler's `affinityKey` option returned; undefined without one). */
  readonly key: unknown;
  /** The tunnel RPC's request metadata, peer and auth context. */
  readonly info: TunnelInfo;
  /** When the tunnel became ready. */
  readonly openedAt: Date;
}
