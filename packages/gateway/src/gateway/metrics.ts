// The gateway's Prometheus metrics (prom-client), on a registry of its own
// so that several gateways in one process (tests, the demo) do not collide.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Status code names for the `code` label, as gRPC spells them. */
const CODE_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

export function codeName(code: number): string {
  return CODE_NAMES[code] ?? String(code);
}

export type GatewayMetrics = ReturnType<typeof createMetrics>;

export function createMetrics(sources: {
  agents: () => number;
  tunnels: () => number;
  activeStreams: () => number;
  /** Open tunnels per agent label (bounded by the caller: labels are series). */
  tunnelsPerAgent: () => ReadonlyMap<string, number>;
  replica?: string;
}) {
  const registry = new Registry();
  // Every series names the replica it comes from, when there are several.
  if (sources.replica) registry.setDefaultLabels({ replica: sources.replica });
  // Gauges read their sources when scraped, so they are never stale.
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge('grpctunnel_gateway_agents', 'Distinct agent ids connected.', sources.agents);
  gauge('grpctunnel_gateway_tunnels', 'Reverse tunnels open.', sources.tunnels);
  gauge('grpctunnel_gateway_active_streams', 'Calls in flight through tunnels.', sources.activeStreams);
  // Which agents this replica holds: behind a load balancer each replica
  // reports its own, and together they show every agent reaching every replica.
  new Gauge({
    name: 'grpctunnel_gateway_agent_tunnels',
    help: 'Reverse tunnels open, per agent id.',
    labelNames: ['agent'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [agent, n] of sources.tunnelsPerAgent()) this.set({ agent }, n);
    },
  });
  return {
    registry,
    calls: new Counter({
      name: 'grpctunnel_gateway_calls_total',
      help: 'Calls forwarded, by agent, method and gRPC status code.',
      labelNames: ['agent', 'method', 'code'] as const,
      registers: [registry],
    }),
    bytes: new Counter({
      name: 'grpctunnel_gateway_message_bytes_total',
      help: 'Message bytes forwarded, by direction (in = from callers to agents).',
      labelNames: ['direction'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'grpctunnel_gateway_call_duration_seconds',
      help: 'Duration of forwarded calls.',
      labelNames: ['code'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    connectionRefusals: new Counter({
      name: 'grpctunnel_gateway_connections_closed_total',
      help: 'Connections closed by the per-peer limits, by port and reason.',
      labelNames: ['port', 'reason'] as const,
      registers: [registry],
    }),
    callerRefusals: new Counter({
      name: 'grpctunnel_gateway_caller_refusals_total',
      help: 'Calls refused before forwarding: unauthenticated callers, and calls the policy denies.',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    connects: new Counter({
      name: 'grpctunnel_gateway_agent_connections_total',
      help: 'Reverse tunnels accepted and refused.',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
  };
}

/** The label value for everything a {@link BoundedLabels} does not name. */
export const OTHER_LABEL = '(other)';

/**
 * Label values that callers (or agents) can choose, kept to a bounded set:
 * each distinct value is a new series that lives as long as the process, so
 * a value is used only once admitted, and at most `max` are ever admitted.
 */
export class BoundedLabels {
  private readonly admitted = new Set<string>();
  constructor(private readonly max: number) {}

  /** The label for `value`: itself if admitted before, or now (when `admit` and there is room); else {@link OTHER_LABEL}. */
  label(value: string, admit: boolean): string {
    if (this.admitted.has(value)) return value;
    if (!admit || this.admitted.size >= this.max) return OTHER_LABEL;
    this.admitted.add(value);
    return value;
  }
}
