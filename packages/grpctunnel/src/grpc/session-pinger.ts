import { experimental, logVerbosity } from '@grpc/grpc-js';
import { keepaliveError } from './keepalive.js';
import { type LongTimer, setLongTimeout } from './long-timer.js';

// One pinger per HTTP/2 session, however many tunnels it carries: the
// connection is what dies, and one PING answers for all of its streams.

/** What the pinger needs of a `node:http2` session (server or client side). */
export interface PingableSession {
  readonly destroyed: boolean;
  readonly closed: boolean;
  ping(callback: (err: Error | null, duration: number, payload: Buffer) => void): boolean;
  destroy(): void;
  once(event: 'close', listener: () => void): unknown;
  removeListener(event: 'close', listener: () => void): unknown;
}

/** Checks that `value` looks like a `node:http2` session the pinger can use. */
export function isPingableSession(value: unknown): value is PingableSession {
  const s = value as Partial<PingableSession> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    typeof s.ping === 'function' &&
    typeof s.destroy === 'function' &&
    typeof s.once === 'function' &&
    typeof s.removeListener === 'function' &&
    typeof s.destroyed === 'boolean'
  );
}

/** Called when the session's peer stopped answering; the session is destroyed right after. */
export type OnPeerGone = (cause: Error) => void;

class SessionPinger {
  private timer: LongTimer | undefined;
  private readonly watchers = new Set<OnPeerGone>();
  private stopped = false;
  /** Bumped per ping, so that a late answer to an abandoned ping is ignored. */
  private generation = 0;

  constructor(
    private readonly session: PingableSession,
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly onStop: () => void,
  ) {
    session.once('close', this.stop);
    this.schedule();
  }

  add(watcher: OnPeerGone): () => void {
    this.watchers.add(watcher);
    return () => {
      this.watchers.delete(watcher);
      // Nothing of ours left on the connection: it is the user's again.
      if (this.watchers.size === 0) this.stop();
    };
  }

  private readonly stop = (): void => {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.clear();
    this.session.removeListener('close', this.stop);
    this.onStop();
  };

  private schedule(): void {
    // Unref'd: the connection keeps the process alive, not its pinger.
    this.timer = setLongTimeout(() => this.ping(), this.intervalMs, true);
  }

  private ping(): void {
    if (this.stopped) return;
    if (this.session.destroyed || this.session.closed) {
      this.stop();
      return;
    }
    const generation = ++this.generation;
    let sent: boolean;
    try {
      sent = this.session.ping((err) => {
        if (this.stopped || generation !== this.generation) return;
        this.timer?.clear();
        if (err)
          this.stop(); // cancelled: the session is closing
        else this.schedule();
      });
    } catch {
      sent = false; // the session ended between the check and the ping
    }
    if (!sent) {
      // Too many pings outstanding (someone else pings too) or closing: try later.
      this.schedule();
      return;
    }
    this.timer = setLongTimeout(() => this.gone(), this.timeoutMs, true);
  }

  private gone(): void {
    if (this.stopped) return;
    const cause = keepaliveError(this.timeoutMs);
    experimental.log(logVerbosity.INFO, `grpctunnel: ${cause.message}; closing the connection and its tunnels`);
    const watchers = [...this.watchers];
    this.stop();
    // Tunnels end first, with the cause; destroying the session afterwards
    // makes grpc-js drop the connection (a client reconnects on a fresh one)
    // instead of reporting a vaguer error for them.
    for (const watcher of watchers) {
      try {
        watcher(cause);
      } catch (err) {
        experimental.log(logVerbosity.ERROR, `grpctunnel: a keepalive watcher threw: ${err}`);
      }
    }
    this.session.destroy();
  }
}

const pingers = new WeakMap<PingableSession, SessionPinger>();

/**
 * Pings `session` every `intervalMs` (after the previous answer) while at
 * least one watcher is registered and the session is open. A ping not
 * answered within `timeoutMs` calls every watcher with the cause, then
 * destroys the session. A session already pinged keeps its first settings.
 * Returns the function that unregisters this watcher.
 */
export function watchSession(
  session: PingableSession,
  intervalMs: number,
  timeoutMs: number,
  onPeerGone: OnPeerGone,
): () => void {
  if (session.destroyed || session.closed) return () => {};
  let pinger = pingers.get(session);
  if (!pinger) {
    const created: SessionPinger = new SessionPinger(session, intervalMs, timeoutMs, () => {
      if (pingers.get(session) === created) pingers.delete(session);
    });
    pingers.set(session, created);
    pinger = created;
  }
  return pinger.add(onPeerGone);
}
