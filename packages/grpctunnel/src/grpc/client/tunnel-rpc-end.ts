import { type LongTimer, setLongTimeout } from '../long-timer.js';

/**
 * How long the server has to finish a tunnel RPC this side half-closed
 * before it is cancelled. Our handler and the Go reference answer a
 * half-close at once with an OK status, so this only runs out when the
 * server or the network is gone; a reset then is a single one.
 */
export const TUNNEL_RPC_END_GRACE_MS = 5_000;

/** The parts of a grpc-js client call (a `ClientDuplexStream`) that ending it needs. */
export interface EndableCall {
  end(): unknown;
  cancel(): void;
  resume(): unknown;
  once(event: 'metadata' | 'status', listener: () => void): unknown;
}

/**
 * Ends the tunnel RPC of the side that opened it (the gRPC client) without
 * an HTTP/2 reset wherever the server allows it.
 *
 * `call.cancel()` sends RST_STREAM. node:http2 servers (nghttp2 >= 1.57)
 * count every RST_STREAM a client sends (a bucket of 1000, refilled at 33 a
 * second) and answer a client that empties it with GOAWAY(INTERNAL_ERROR),
 * which fails every other stream on the connection, other tunnels included.
 * So once the server has answered, a tunnel RPC ends with a half-close: the
 * server sees the end of the requests and finishes the RPC with its status.
 * A cancel is left for an RPC the server never answered (there may be no
 * stream yet) and for a server that does not finish it in time.
 */
export class TunnelRpcEnd {
  private answered = false;
  private finished = false;
  private halfClosed = false;
  private timer: LongTimer | undefined;

  /** Create it right after the call, before other listeners see its events. */
  constructor(
    private readonly call: EndableCall,
    private readonly graceMs = TUNNEL_RPC_END_GRACE_MS,
  ) {
    call.once('metadata', () => {
      this.answered = true;
    });
    call.once('status', () => {
      this.finished = true;
      this.timer?.clear();
    });
  }

  /** Whether the RPC has ended (its status arrived). */
  get done(): boolean {
    return this.finished;
  }

  /**
   * No more frames from this side: half-closes and waits for the server to
   * finish the RPC however long that takes (a graceful drain).
   */
  halfClose(): void {
    if (this.finished || this.halfClosed) return;
    this.halfClosed = true;
    this.call.end();
  }

  /**
   * This side is done with the tunnel: half-closes, and cancels if the
   * server has not finished the RPC within the grace period. Cancels at once
   * if the server never answered. Safe to call more than once.
   */
  end(): void {
    if (this.finished || this.timer) return;
    if (!this.answered) {
      this.cancel();
      return;
    }
    this.halfClose();
    // What the server still sends is read and dropped: grpc-js holds the status back behind unread messages.
    this.call.resume();
    this.timer = setLongTimeout(() => this.call.cancel(), this.graceMs);
  }

  /** Cancels now (an HTTP/2 reset once the stream exists). */
  cancel(): void {
    if (this.finished) return;
    this.timer?.clear();
    this.call.cancel();
  }
}
