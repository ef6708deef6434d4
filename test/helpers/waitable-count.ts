// A count a test can wait on, for helpers that count events (connections
// accepted, pings received) and let tests wait until enough have happened.

export class WaitableCount {
  private count = 0;
  private readonly waiters = new Set<() => void>();

  get value(): number {
    return this.count;
  }

  /** Counts one more and wakes the waits it satisfies. */
  increment(): void {
    this.count++;
    for (const w of [...this.waiters]) w();
  }

  /** Resolves once the count has reached `n` (at once if it has). */
  until(n: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.count < n) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
      check();
    });
  }
}
