import { experimental, logVerbosity } from '@grpc/grpc-js';

/** Options of {@link PeerFaultLog}. */
export interface PeerFaultLogOptions {
  /** Lines written per interval before the rest are only counted. Default 10. */
  readonly linesPerInterval?: number;
  /** Length of an interval, in ms. Default 60 000. */
  readonly intervalMs?: number;
  /** Clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
  /** Where lines go. Default grpc-js's logger at INFO. */
  readonly write?: (line: string) => void;
  /** Put before every line. Default `grpctunnel: ` (grpc-js's log is shared with other libraries). */
  readonly prefix?: string;
}

/**
 * Logs problems a peer caused (malformed frames or messages, protocol
 * violations), as opposed to our own faults, which stay at ERROR.
 *
 * A peer's mistakes are answered with a status on the wire; the log is for
 * the operator, so it goes below error level, and a peer sending garbage in
 * a loop must not flood it: past `linesPerInterval` lines in an interval the
 * rest are counted, and the count is reported with the next line logged.
 * No timer is used, so nothing is left running.
 */
export class PeerFaultLog {
  private readonly limit: number;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly write: (line: string) => void;
  private readonly prefix: string;
  private intervalStart = Number.NEGATIVE_INFINITY;
  private written = 0;
  private suppressed = 0;

  constructor(options: PeerFaultLogOptions = {}) {
    this.limit = options.linesPerInterval ?? 10;
    this.intervalMs = options.intervalMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.write = options.write ?? ((line) => experimental.log(logVerbosity.INFO, line));
    this.prefix = options.prefix ?? 'grpctunnel: ';
  }

  /** Logs one peer fault, unless this interval's lines are used up. */
  log(message: string): void {
    const now = this.now();
    if (now - this.intervalStart >= this.intervalMs) {
      if (this.suppressed > 0) {
        this.write(`${this.prefix}${this.suppressed} more peer faults were not logged`);
      }
      this.intervalStart = now;
      this.written = 0;
      this.suppressed = 0;
    }
    if (this.written >= this.limit) {
      this.suppressed++;
      return;
    }
    this.written++;
    this.write(`${this.prefix}${message}`);
  }
}

/** The process-wide log of peer faults that the library's call sites share. */
export const peerFaults = new PeerFaultLog();
