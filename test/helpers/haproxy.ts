// A real TCP load balancer for multi-replica tests: HAProxy from Debian's
// packages (CI installs it), round-robin over the given backends, with fast
// health checks so a stopped backend leaves the rotation within a second.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './cli.js';

/** Where HAProxy is, or undefined when it is not installed. */
export function haproxyPath(): string | undefined {
  for (const candidate of ['/usr/sbin/haproxy', 'haproxy']) {
    if (spawnSync(candidate, ['-v']).status === 0) return candidate;
  }
  return undefined;
}

/** A running HAProxy. */
export interface Balancer {
  /** host:port of each frontend, in the order given. */
  readonly addresses: string[];
  stop(): Promise<void>;
}

/**
 * A pool whose servers are in rotation only while an HTTP readiness check
 * answers 200 (`GET /healthz` on each server's `healthz` host:port, in the
 * same order), as a Kubernetes Service follows its pods' readiness probes.
 */
export interface CheckedPool {
  servers: string[];
  healthz: string[];
}

/**
 * Starts HAProxy in TCP mode with one frontend per entry of `pools`, each
 * balancing round-robin over its backends (host:port), checked by TCP
 * connect or (a {@link CheckedPool}) by an HTTP readiness probe. A
 * connection a stopped server refuses is redispatched to another. Long idle
 * timeouts: tunnels are long-lived, and liveness is the peers' own business.
 */
export async function startHaproxy(pools: Array<string[] | CheckedPool>): Promise<Balancer> {
  const binary = haproxyPath();
  if (!binary) throw new Error('HAProxy is not installed (apt-get install haproxy)');
  const ports = await Promise.all(pools.map(() => freePort()));
  const lines = [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    '  retries 3',
    '  option redispatch',
    '  default-server inter 200ms fall 2 rise 1',
  ];
  for (const [i, pool] of pools.entries()) {
    lines.push(`frontend f${i}`, `  bind 127.0.0.1:${ports[i]}`, `  default_backend b${i}`);
    lines.push(`backend b${i}`, '  balance roundrobin');
    if (Array.isArray(pool)) {
      for (const [j, address] of pool.entries()) lines.push(`  server s${j} ${address} check`);
      continue;
    }
    lines.push('  option httpchk GET /healthz', '  http-check expect status 200');
    for (const [j, address] of pool.servers.entries()) {
      const probe = pool.healthz[j] as string;
      const colon = probe.lastIndexOf(':');
      lines.push(`  server s${j} ${address} check addr ${probe.slice(0, colon)} port ${probe.slice(colon + 1)}`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'grpctunnel-haproxy-'));
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(config, `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn(binary, ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  // Ready once every frontend accepts connections. HAProxy prints nothing
  // when it starts listening, so this is a bounded poll of the ports.
  const { connect } = await import('node:net');
  for (const port of ports) {
    for (let attempt = 0; ; attempt++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) break;
      if (child.exitCode !== null || attempt > 200) {
        child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`HAProxy did not start:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    addresses,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
