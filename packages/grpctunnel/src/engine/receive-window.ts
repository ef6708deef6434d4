import { DEFAULT_WINDOW_SIZE, MAX_CHUNK_SIZE } from './constants.js';

/** Receive-window settings (either role). */
export interface ReceiveWindowOptions {
  /** Window each stream starts with and announces. Default 65536. */
  readonly initialWindowSize?: number | undefined;
  /** Largest window a stream grows to while its reader keeps up. Default 2 MiB. */
  readonly maxWindowSize?: number | undefined;
  /** Smallest batch of consumed bytes returned in one window_update. Default 16384. */
  readonly windowUpdateThreshold?: number | undefined;
  /** Growth beyond the initial windows that all streams sharing this budget may hold at once. Default 16 MiB. */
  readonly windowGrowthBudget?: number | undefined;
}

/** Default {@link ReceiveWindowOptions.maxWindowSize}. */
export const DEFAULT_MAX_WINDOW_SIZE = 2 * 1024 * 1024;
/** Default {@link ReceiveWindowOptions.windowGrowthBudget}. */
export const DEFAULT_WINDOW_GROWTH_BUDGET = 16 * 1024 * 1024;

/**
 * The receive windows of a set of streams: those of one tunnel, or of all
 * the tunnels of a handler or reverse tunnel server, which share one.
 *
 * A stream starts with the announced window. A fixed 64 KiB window caps a
 * stream at 64 KiB per round trip of a window update through both event
 * loops, which is far below what the connection carries; a stream whose
 * reader keeps up is therefore granted more (extra credit in its window
 * updates, which the protocol allows: a sender just adds it), doubling up to
 * {@link max}. What a stalled reader can make this side buffer is the sum of
 * the windows, so the growth of all streams together is capped by one
 * budget, and a stream hands its growth back when it ends.
 */
export class ReceiveWindows {
  /** The window every stream starts with. */
  readonly initial: number;
  /** The most one stream's window grows to. */
  readonly max: number;
  private readonly minThreshold: number;
  private spare: number;

  constructor(options: ReceiveWindowOptions = {}) {
    this.initial = checked('initialWindowSize', options.initialWindowSize ?? DEFAULT_WINDOW_SIZE, 1);
    this.max = Math.max(this.initial, checked('maxWindowSize', options.maxWindowSize ?? DEFAULT_MAX_WINDOW_SIZE, 1));
    this.minThreshold = Math.min(
      checked('windowUpdateThreshold', options.windowUpdateThreshold ?? MAX_CHUNK_SIZE, 1),
      this.initial,
    );
    this.spare = checked('windowGrowthBudget', options.windowGrowthBudget ?? DEFAULT_WINDOW_GROWTH_BUDGET, 0);
  }

  /**
   * Consumed bytes gathered before a window_update, for a stream's current
   * window: a quarter of it (fewer frames as windows grow), never below the
   * configured threshold, never above the window itself.
   */
  threshold(window: number): number {
    return Math.min(window, Math.max(this.minThreshold, Math.floor(window / 4)));
  }

  /** Takes up to `wanted` bytes of growth from the tunnel's budget; returns what was granted. */
  grow(wanted: number): number {
    const granted = Math.max(0, Math.min(wanted, this.spare));
    this.spare -= granted;
    return granted;
  }

  /** Returns growth to the budget (a stream ended). */
  release(bytes: number): void {
    this.spare += bytes;
  }

  /** Growth still available to the tunnel's streams. */
  get available(): number {
    return this.spare;
  }
}

/** Window sizes travel as uint32 and a sender's window must not overflow: keep them to 31 bits. */
function checked(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min || value > 0x7fffffff) {
    throw new RangeError(`${name} must be an integer from ${min} to ${0x7fffffff}, got ${value}`);
  }
  return value;
}
