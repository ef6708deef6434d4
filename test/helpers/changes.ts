// A signal for "what a test collects has changed": frames a fake peer
// received, calls a handler saw. The collector calls notify() after each
// change; a test waits for a condition over the collection with until(),
// which checks it at once and after each change, instead of polling.

export class Changes {
  private readonly waiters = new Set<() => void>();

  /** Wakes every wait whose condition now holds; call after each change. */
  notify(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /**
   * Resolves once `condition()` holds (at once if it does), checked after
   * each notify(); rejects naming `what` if it does not within `timeoutMs`,
   * so a broken condition fails the test rather than hanging it.
   */
  until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`not within ${timeoutMs} ms: ${what}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
}
