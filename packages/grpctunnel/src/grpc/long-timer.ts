// Node's setTimeout takes at most 2^31-1 ms (about 24.8 days); a longer delay
// prints a TimeoutOverflowWarning and fires after 1 ms. gRPC deadlines reach
// much further (grpc-timeout allows 99,999,999 hours), so every deadline,
// wait and timeout in the library goes through this one helper.

/** Longest delay one Node timer accepts. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A pending timer made by {@link setLongTimeout}. */
export interface LongTimer {
  /** Stops the timer; the callback will not run. Safe to call more than once. */
  clear(): void;
}

/**
 * Runs `callback` once, `ms` milliseconds from now, for any finite `ms`
 * (an infinite `ms` never fires). Long delays are split into timers Node
 * accepts and re-checked against the clock, so the callback never fires early.
 * Timers are unref'd only when `unref` is true.
 */
export function setLongTimeout(callback: () => void, ms: number, unref = false): LongTimer {
  let timer: NodeJS.Timeout | undefined;
  let cleared = false;
  if (Number.isNaN(ms) || ms === Number.POSITIVE_INFINITY) return { clear: () => {} };
  const due = Date.now() + Math.max(0, ms);
  const arm = (): void => {
    const left = due - Date.now();
    if (left <= MAX_TIMER_MS) {
      timer = setTimeout(callback, Math.max(0, left));
    } else {
      timer = setTimeout(arm, MAX_TIMER_MS);
    }
    if (unref) timer.unref();
  };
  arm();
  return {
    clear: () => {
      if (cleared) return;
      cleared = true;
      if (timer) clearTimeout(timer);
    },
  };
}

/**
 * Resolves after `ms` (any finite delay, as {@link setLongTimeout}), or at
 * once when `signal` aborts; never rejects. For retry loops that stop waiting
 * when they are told to stop.
 */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      timer.clear();
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setLongTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
