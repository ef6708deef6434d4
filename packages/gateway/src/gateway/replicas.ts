// Several gateway replicas behind one load-balanced address. Each replica
// names itself, and the replica count it was deployed with, in the response
// headers of every tunnel RPC; an agent dials the shared address again and
// again (each time on a new connection, which the balancer may send to any
// replica) until it holds its quota of tunnels on every distinct replica.
// Any replica can then reach any agent, with no shared store between them.
import { type Metadata, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { OPEN_REVERSE_TUNNEL_PATH } from 'grpctunnel/protocol';

/** Response header of a tunnel RPC: the id of the gateway replica that accepted it. */
export const REPLICA_HEADER = 'grpctunnel-replica';
/** Response header of a tunnel RPC: how many replicas that gateway was deployed with. */
export const REPLICAS_HEADER = 'grpctunnel-replicas';

/** What a replica said about itself. */
export interface ReplicaAdvert {
  /** The replica's id ('' for a gateway that does not advertise, i.e. a single one). */
  readonly id: string;
  /** How many replicas there should be (1 for a gateway that does not advertise). */
  readonly count: number;
}

/** Most replicas an advert may claim: a bound on how many tunnels an agent will dial. */
export const MAX_REPLICAS = 64;

/** Reads a replica's advert from a tunnel RPC's response headers (absent headers: one unnamed replica). */
export function readAdvert(headers: Metadata): ReplicaAdvert {
  const id = headers.get(REPLICA_HEADER)[0]?.toString() ?? '';
  const raw = Number(headers.get(REPLICAS_HEADER)[0]?.toString() ?? '1');
  const count = Number.isInteger(raw) && raw >= 1 ? Math.min(raw, MAX_REPLICAS) : 1;
  return { id, count };
}

/**
 * An agent's account of its tunnels per replica: which new tunnel to keep,
 * and how many tunnels it should be holding in all.
 */
export class ReplicaLedger {
  private readonly held = new Map<string, number>();
  private advertised = 1;

  constructor(private readonly perReplica: number) {}

  /**
   * Records a tunnel that a replica accepted. Returns false, recording
   * nothing, when that replica already holds this agent's quota: the agent
   * should close the tunnel and its connection, and dial again.
   */
  admit(advert: ReplicaAdvert): boolean {
    this.advertised = advert.count;
    const n = this.held.get(advert.id) ?? 0;
    if (n >= this.perReplica) return false;
    this.held.set(advert.id, n + 1);
    return true;
  }

  /** Forgets a tunnel that {@link admit} accepted, once it has ended. */
  release(replica: string): void {
    const n = (this.held.get(replica) ?? 0) - 1;
    if (n > 0) this.held.set(replica, n);
    else this.held.delete(replica);
  }

  /** Replicas to hold tunnels on: as many as the last advert said, or more if more were seen at once. */
  get replicas(): number {
    // Capped: a gateway naming a new replica on every connection must not
    // make the agent dial without bound.
    return Math.min(MAX_REPLICAS, Math.max(this.advertised, this.held.size));
  }

  /** Tunnels the agent should hold in all. */
  get wanted(): number {
    return this.perReplica * this.replicas;
  }

  /** Whether any replica holds a tunnel of this agent. */
  get holdsAny(): boolean {
    return this.held.size > 0;
  }

  /** Tunnels held per replica id, for logs and tests. */
  snapshot(): Map<string, number> {
    return new Map(this.held);
  }
}

/**
 * A grpc-js server interceptor for the gateway's agents port: adds the
 * replica's advert to the response headers of every reverse tunnel RPC.
 */
export function advertiseReplica(advert: ReplicaAdvert): ServerInterceptor {
  return (method, call) => {
    if (method.path !== OPEN_REVERSE_TUNNEL_PATH) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      sendMetadata: (headers, next) => {
        headers.set(REPLICA_HEADER, advert.id);
        headers.set(REPLICAS_HEADER, String(advert.count));
        next(headers);
      },
    });
  };
}
