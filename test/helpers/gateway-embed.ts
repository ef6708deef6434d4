// Small helpers for tests that embed the gateway through grpctunnel-gateway.
import {
  type AgentOptions,
  type Gateway,
  type GatewayOptions,
  type Logger,
  startAgent,
  startGateway,
} from 'grpctunnel-gateway';
import { handlerOf } from '#gateway/gateway/gateway.js';

/** A logger that keeps what it was told (`level message` lines), for assertions. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A promise with its resolve function outside (Promise.withResolvers is Node 22+). */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve = (_value: T) => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** What a test started, stopped in reverse order by {@link runCleanups} (each file's afterEach). */
export const cleanups: Array<() => Promise<unknown> | unknown> = [];

/** Stops everything `cleanups` holds, newest first. */
export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) await cleanups.pop()?.();
}

/** A gateway on loopback ports, quiet and without keepalive, closed after the test. */
export async function gatewayWith(options: Partial<GatewayOptions>): Promise<Gateway> {
  const gw = await startGateway({
    listen: '127.0.0.1:0',
    agents: '127.0.0.1:0',
    access: {},
    logger: recordingLogger(),
    keepalive: false,
    ...options,
  });
  cleanups.push(() => gw.close(0));
  return gw;
}

/**
 * An agent `edge` with one tunnel to `gw`, forwarding to `target`, quiet and
 * without keepalive, stopped after the test; resolves once the gateway holds
 * its tunnel.
 */
export async function attachAgent(gw: Gateway, target: string, options: Partial<AgentOptions> = {}): Promise<void> {
  const attached = new Promise<void>((resolve) => handlerOf(gw).once('reverseTunnelOpen', () => resolve()));
  const agent = startAgent({
    gateway: gw.agentsAddress,
    target,
    id: 'edge',
    tunnels: 1,
    security: { insecure: true },
    logger: recordingLogger(),
    keepalive: false,
    ...options,
  });
  cleanups.push(() => agent.stop(0));
  await attached;
}
