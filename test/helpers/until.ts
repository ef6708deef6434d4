// The last resort for waiting: a bounded poll of an observable condition.
// Wait on an event or a promise whenever one exists (the echo service's
// handlerStarted/handlerCancelled, a 'close' or 'reverseTunnelClose' event,
// WaitableCount); a caller of `until` says in a comment why none does.
import { setTimeout as sleep } from 'node:timers/promises';

/** How long {@link until} polls by default, and how often. */
export interface UntilOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Resolves once `condition()` holds, checking at once and then every
 * `intervalMs`; rejects naming `what` if it still does not hold after
 * `timeoutMs` (the poll is bounded so a broken condition fails the test
 * rather than hanging it).
 */
export async function until(
  condition: () => boolean,
  what: string,
  { timeoutMs = 10_000, intervalMs = 5 }: UntilOptions = {},
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(intervalMs);
  }
}
