/** How a reconnecting reverse tunnel server spaces its attempts. */
export interface BackoffOptions {
  /** Delay before the first retry, in ms. Default 1000 (as grpc's connection backoff). */
  initialDelayMs?: number;
  /** Upper bound of any delay, in ms. Default 30000. */
  maxDelayMs?: number;
  /** Growth factor per failed attempt. Default 1.6. */
  multiplier?: number;
  /** Random spread, as a fraction of the delay (0.2 = ±20%). Default 0.2. */
  jitter?: number;
  /** A tunnel that stayed up this long (ms) resets the delay to the initial one. Default 10000. */
  resetAfterMs?: number;
}

/** Exponential backoff with jitter, bounded; `random` is injectable for tests. */
export class Backoff {
  private readonly initial: number;
  private readonly max: number;
  private readonly multiplier: number;
  private readonly jitter: number;
  /** How long a tunnel must have been up for the next delay to start over. */
  readonly resetAfterMs: number;
  private current: number;

  constructor(
    options: BackoffOptions = {},
    private readonly random: () => number = Math.random,
  ) {
    this.initial = Math.max(0, options.initialDelayMs ?? 1000);
    this.max = Math.max(this.initial, options.maxDelayMs ?? 30_000);
    this.multiplier = Math.max(1, options.multiplier ?? 1.6);
    this.jitter = Math.min(1, Math.max(0, options.jitter ?? 0.2));
    this.resetAfterMs = options.resetAfterMs ?? 10_000;
    this.current = this.initial;
  }

  /** The delay before the next attempt; each call grows the following one. Never above the bound. */
  next(): number {
    const base = this.current;
    this.current = Math.min(this.max, this.current * this.multiplier);
    const spread = base * this.jitter * (this.random() * 2 - 1);
    return Math.round(Math.min(this.max, Math.max(0, base + spread)));
  }

  /** Starts over from the initial delay (after a healthy period). */
  reset(): void {
    this.current = this.initial;
  }
}
