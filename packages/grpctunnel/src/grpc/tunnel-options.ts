/** Tuning shared by both ends of a tunnel. */
export interface TunnelOptions {
  /**
   * Run protocol revision one (per-stream flow control). Default true. With
   * false the tunnel runs revision zero, as with a peer that does not negotiate.
   */
  flowControl?: boolean;
  /** Receive window each stream starts with and announces, in bytes. Default 65536. */
  initialWindowSize?: number;
  /**
   * Largest receive window a stream grows to while its reader keeps up, in
   * bytes. Default 2 MiB; set it to `initialWindowSize` to keep windows fixed.
   */
  maxWindowSize?: number;
  /**
   * Growth beyond the initial windows that streams may hold together, in
   * bytes: with stalled readers, they buffer at most their initial windows
   * plus this. Shared by all tunnels of a `TunnelServiceHandler` or of a
   * `ReverseTunnelServer`; per tunnel for `openTunnel`. Default 16 MiB.
   */
  windowGrowthBudget?: number;
  /** Largest message accepted from the peer, in bytes. Default 4 MiB, as grpc-js. */
  maxReceiveMessageSize?: number;
  /**
   * Smallest batch of consumed bytes returned in one window_update frame
   * (grown windows use a quarter of the window). Default 16384. The Go
   * reference sends one update per received chunk; larger values save frames.
   */
  windowUpdateThreshold?: number;
  /**
   * Largest data chunk, in bytes, this side accepts and sends when the peer
   * is this library too. Each side offers it in a tunnel RPC header
   * (`grpctunnel-max-chunk-size`); when both did, chunks go up to the
   * smaller offer, so that a message of up to that size crosses as one gRPC
   * message on the tunnel RPC instead of one per 16 KiB (grpc-js pays a
   * fixed cost per message: streaming runs about twice as fast). A peer
   * that offers nothing, such as the Go reference, gets the protocol's
   * 16 KiB chunks and nothing else changes. The connection's limit on
   * received messages (grpc-js's `grpc.max_receive_message_length`, 4 MiB by
   * default) must stay above it. 16384 turns the extension off. Default
   * 1 MiB; at most 4 MiB - 4 KiB.
   */
  maxChunkSize?: number;
}

/**
 * The tunnel settings the user gave, without the ones left unset (the
 * engines apply their defaults to those). Also used to pass a handler's
 * settings on to the channels of its reverse tunnels.
 */
export function tunnelTuning(options: TunnelOptions): TunnelOptions & { flowControl: boolean } {
  const {
    initialWindowSize,
    maxWindowSize,
    windowGrowthBudget,
    maxReceiveMessageSize,
    windowUpdateThreshold,
    maxChunkSize,
  } = options;
  return {
    flowControl: options.flowControl ?? true,
    ...(initialWindowSize !== undefined && { initialWindowSize }),
    ...(maxWindowSize !== undefined && { maxWindowSize }),
    ...(windowGrowthBudget !== undefined && { windowGrowthBudget }),
    ...(maxReceiveMessageSize !== undefined && { maxReceiveMessageSize }),
    ...(windowUpdateThreshold !== undefined && { windowUpdateThreshold }),
    ...(maxChunkSize !== undefined && { maxChunkSize }),
  };
}
