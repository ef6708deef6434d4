// The agent's side of several gateway replicas: dial the shared address on
// fresh connections until every replica holds this agent's quota of tunnels,
// and keep it so as replicas come and go.
import { type Metadata, type ServiceError, status as Status } from '@grpc/grpc-js';
import type {
  BackoffOptions,
  ReverseTunnelServer,
  ReverseTunnelServerOptions,
  ServeResult,
  TunnelConnection,
} from 'grpctunnel';
import { Backoff, sleepUnlessAborted, statusError } from 'grpctunnel/internal';
import { ReplicaLedger, readAdvert } from './replicas.js';

/** What the dialer reports, for logs. */
export interface ReplicaDialerEvents {
  /** A tunnel opened on `replica`; `held` is the ledger afterwards. */
  opened(replica: string, held: ReadonlyMap<string, number>, wanted: number): void;
  /** A kept tunnel ended. */
  closed(replica: string, result: ServeResult, held: ReadonlyMap<string, number>): void;
  /** The connection to `replica` stopped taking tunnels (GOAWAY from a replica shutting down, or a lost
   * connection): a replacement is dialed now, while calls on the old tunnel finish. */
  leaving(replica: string): void;
  /** A connection reached a replica that already had its quota; dialing again after `delayMs`. */
  full(replica: string, delayMs: number): void;
  /** Dialing failed or a tunnel ended; trying again after `delayMs`. */
  retrying(error: ServiceError | undefined, delayMs: number): void;
}

/** Options of {@link ReplicaDialer}. */
export interface ReplicaDialerOptions {
  /** Tunnels to hold on each replica. */
  perReplica: number;
  /** A new connection to the gateway's (balanced) address, never shared with another dial. */
  connect(): TunnelConnection;
  /** The reverse tunnel server that serves calls on one connection, checking replicas with `authenticate`. */
  createServer(
    connection: TunnelConnection,
    authenticate: NonNullable<ReverseTunnelServerOptions['authenticate']>,
  ): ReverseTunnelServer;
  /** Request metadata of every tunnel RPC (agent id, token). */
  metadata: Metadata;
  /** Spacing of reconnection attempts. */
  backoff: BackoffOptions;
  /** The error that ends the dialer instead of a retry (a refused token), or undefined to retry. */
  fatal(error: ServiceError): Error | undefined;
  events: ReplicaDialerEvents;
}

/** The status `authenticate` refuses a full replica's tunnel with (never sent to the gateway as a call status). */
const FULL = Status.ALREADY_EXISTS;

/**
 * For this long after a dial loop starts or loses its replica (an agent
 * starting, a replica going away), dials that land on full replicas repeat
 * at least this often: a replica being restarted comes back within seconds,
 * and every agent must find it soon for it to serve their callers. Through a
 * balancer that picks at random among R replicas, finding the missing one
 * takes R dials on average whatever their pace, so a quick pace costs no
 * more dials, only packs them into less time (3 replicas at 250 ms: half the
 * agents back within 0.5 s, all but one in a million within 10 s). After the
 * window the delay grows to the ordinary bound, so a replica that stays away
 * does not cost the others a steady stream of dials.
 */
const PROMPT_DIALS = { windowMs: 10_000, maxDelayMs: 250 };

/**
 * Keeps `perReplica` reverse tunnels on every replica of a gateway. Each
 * dial is a new connection (so the balancer may pick another replica); a
 * tunnel that lands on a replica already holding its quota is closed before
 * any call and dialed again, quickly at first, then backing off to the
 * ordinary bound (a replica that is down makes the others look full).
 */
export class ReplicaDialer {
  private readonly ledger: ReplicaLedger;
  /** Aborted by forceShutdown(): cancels tunnels and calls. */
  private readonly stopper = new AbortController();
  /** Aborted by forceShutdown() and tryShutdown(): no more dialing, and waits end early. */
  private readonly quiet = new AbortController();
  private readonly servers = new Set<ReverseTunnelServer>();
  private readonly loops = new Set<Promise<void>>();
  private slots = 0;
  private fatal: Error | undefined;
  private settle!: (error: Error | undefined) => void;
  /** Settles once the dialer has stopped: with the fatal error that stopped it, or undefined. */
  readonly done: Promise<Error | undefined>;

  constructor(private readonly options: ReplicaDialerOptions) {
    this.ledger = new ReplicaLedger(options.perReplica);
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
    this.grow();
  }

  /** Tunnels held per replica now. */
  held(): Map<string, number> {
    return this.ledger.snapshot();
  }

  /** Cancels every tunnel and call now. */
  forceShutdown(): void {
    this.quiet.abort();
    this.stopper.abort();
    for (const server of this.servers) server.forceShutdown();
  }

  /** Running calls finish, then the tunnels end; no more dialing. */
  async tryShutdown(): Promise<void> {
    this.quiet.abort();
    await Promise.all([...this.servers].map((s) => s.tryShutdown()));
    await this.done;
  }

  private get stopped(): boolean {
    return this.quiet.signal.aborted;
  }

  /** Starts dial loops until there is one per wanted tunnel. */
  private grow(): void {
    while (!this.stopped && this.slots < this.ledger.wanted) {
      this.slots++;
      const loop = this.loop().finally(() => {
        this.loops.delete(loop);
        if (this.loops.size === 0) this.settle(this.fatal);
      });
      this.loops.add(loop);
    }
  }

  private async loop(): Promise<void> {
    const backoff = new Backoff(this.options.backoff);
    const maxDelayMs = this.options.backoff.maxDelayMs ?? 30_000;
    const fullBackoff = new Backoff({ initialDelayMs: 20, multiplier: 2, maxDelayMs, jitter: 0.5 });
    let promptUntil = Date.now() + PROMPT_DIALS.windowMs;
    while (!this.stopped) {
      const outcome = await this.dialOnce();
      // Its place was handed to a replacement when the connection left READY.
      if (outcome.replaced) return;
      if (this.stopped) break;
      const fatal =
        outcome.result.error && outcome.replica === undefined && outcome.full === undefined
          ? this.options.fatal(outcome.result.error)
          : undefined;
      if (fatal) {
        this.fatal = fatal;
        this.forceShutdown();
        break;
      }
      // Fewer tunnels are wanted now (fewer replicas advertised): let this loop go.
      if (this.slots > this.ledger.wanted) break;
      const cap = Math.min(maxDelayMs, PROMPT_DIALS.maxDelayMs);
      // Spread over the upper half of the cap, so that agents do not dial in waves.
      const prompt = (delayMs: number) =>
        Date.now() < promptUntil && delayMs > cap ? Math.round(cap * (0.5 + Math.random() * 0.5)) : delayMs;
      let delayMs: number;
      if (outcome.full !== undefined) {
        delayMs = prompt(fullBackoff.next());
        this.options.events.full(outcome.full, delayMs);
      } else {
        // This loop's replica is gone (or its tunnel ended): find a replica promptly again.
        if (outcome.replica !== undefined) promptUntil = Date.now() + PROMPT_DIALS.windowMs;
        if (outcome.replica !== undefined && outcome.upMs >= backoff.resetAfterMs) {
          backoff.reset();
          fullBackoff.reset();
        }
        delayMs = backoff.next();
        // While other replicas hold this agent's tunnels, one replica is
        // missing, not the gateway: a dial that failed most likely reached
        // the missing replica through a balancer that still lists it (until
        // its health checks drop it), and the next may reach a live one or
        // the missing one restarted, so it goes at the prompt pace as well.
        // With no replica reachable (the gateway down or restarting as a
        // whole), the ordinary backoff spreads the fleet's reconnections.
        if (this.ledger.holdsAny) delayMs = prompt(delayMs);
        this.options.events.retrying(outcome.result.error, delayMs);
      }
      await sleepUnlessAborted(delayMs, this.quiet.signal);
    }
    this.slots--;
  }

  /** One connection, one tunnel: until it ends, or at once when it reached a full replica. */
  private async dialOnce(): Promise<{
    result: ServeResult;
    replica?: string;
    full?: string;
    upMs: number;
    replaced?: boolean;
  }> {
    const connection = this.options.connect();
    let replica: string | undefined;
    let full: string | undefined;
    let replaced = false;
    let ended = false;
    // A replica shutting down sends GOAWAY, and the connection stops taking
    // tunnels long before its tunnel ends (running calls finish first):
    // release the replica's place and dial a replacement now, so the agent
    // never has fewer tunnels than it wants while a replica drains. (A lost
    // connection is told the same way; its tunnel ends with it.)
    let gone = false;
    const onDisconnect = () => {
      gone = true;
      leave();
    };
    connection.on('disconnect', onDisconnect);
    const leave = () => {
      if (ended || replaced || replica === undefined) return;
      replaced = true;
      this.ledger.release(replica);
      this.options.events.leaving(replica);
      this.slots--;
      this.grow();
    };
    const server = this.options.createServer(connection, (headers) => {
      const advert = readAdvert(headers);
      if (!this.ledger.admit(advert)) {
        full = advert.id;
        throw statusError(FULL, `replica ${advert.id} already holds this agent's tunnels`);
      }
      replica = advert.id;
      this.options.events.opened(advert.id, this.ledger.snapshot(), this.ledger.wanted);
      // The advert may have raised the count of replicas: dial for them too.
      this.grow();
      // Gone already while the tunnel was being answered.
      if (gone) leave();
      return { replica: advert.id };
    });
    this.servers.add(server);
    const began = Date.now();
    const result = await server.serve({ metadata: this.options.metadata, signal: this.stopper.signal });
    const upMs = Date.now() - began;
    ended = true;
    this.servers.delete(server);
    connection.off('disconnect', onDisconnect);
    connection.close();
    if (replica !== undefined) {
      if (!replaced) this.ledger.release(replica);
      this.options.events.closed(replica, result, this.ledger.snapshot());
    }
    return {
      result,
      upMs,
      replaced,
      ...(replica !== undefined && { replica }),
      ...(full !== undefined && { full }),
    };
  }
}
