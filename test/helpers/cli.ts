// Runs the grpctunnel command line as real processes for end-to-end tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(import.meta.resolve('#gateway/cli/main.js'));

/** A running grpctunnel process and what it has logged. */
export interface CliProcess {
  readonly child: ChildProcess;
  /** Everything written to stderr so far. */
  log(): string;
  /** Resolves with the first match of `pattern` in the log (waiting for it), or rejects after `ms`. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<ChildProcess>();

/** Starts `grpctunnel args...`; `nodeFlags` go on Node's command line before the script. */
export function runCli(args: string[], nodeFlags: string[] = []): CliProcess {
  const child = spawn(process.execPath, [...nodeFlags, MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let log = '';
  const listeners = new Set<() => void>();
  const onData = (b: Buffer) => {
    log += b.toString();
    for (const l of [...listeners]) l();
  };
  child.stderr?.on('data', onData);
  child.stdout?.on('data', onData);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return {
    child,
    log: () => log,
    exited,
    waitFor(pattern, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(log);
          if (!m) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(m);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern} in:\n${log}`));
        }, ms);
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Kills every process a test left running. */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

/** A port that was free a moment ago (for restarting a process on the same address). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** A gateway process and the addresses it logged. */
export interface GatewayProcess {
  p: CliProcess;
  listen: string;
  agents: string;
  admin: string;
}

/**
 * Starts `grpctunnel gateway` on free loopback ports (admin on, agent token
 * `token` unless null) and waits until it listens. Flags in `extra` come
 * last, so they override these defaults (the CLI keeps a flag's last value).
 */
export async function startGatewayCli(extra: string[] = [], token: string | null = 'secret'): Promise<GatewayProcess> {
  const p = runCli([
    'gateway',
    '--listen',
    '127.0.0.1:0',
    '--agents',
    '127.0.0.1:0',
    '--admin',
    '127.0.0.1:0',
    ...(token === null ? [] : ['--token', token]),
    ...extra,
  ]);
  const m = await p.waitFor(/callers on (\S+), agents on (\S+), admin on http:\/\/(\S+)\//);
  return { p, listen: m[1] as string, agents: (m[2] as string).replace(/,$/, ''), admin: m[3] as string };
}

/** Starts `grpctunnel agent` (token "secret", plaintext, fast reconnects) in front of `target`; `extra` overrides. */
export function startAgentCli(gatewayAgents: string, target: string, id: string, extra: string[] = []): CliProcess {
  return runCli([
    'agent',
    '--gateway',
    gatewayAgents,
    '--target',
    target,
    '--id',
    id,
    '--token',
    'secret',
    '--insecure',
    '--max-backoff',
    '200',
    ...extra,
  ]);
}

/**
 * Waits until the gateway's status page shows `tunnels` ready tunnels of
 * agent `id` (a bounded poll: the page is the only signal a test process has).
 */
export async function waitForAgent(admin: string, id: string, tunnels: number): Promise<void> {
  const row = `<td>${id}</td><td>${tunnels}</td>`;
  for (let i = 0; i < 500; i++) {
    if ((await (await fetch(`http://${admin}/`)).text()).includes(row)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`agent ${id} never had ${tunnels} tunnels at the gateway`);
}

/** The gateway's /metrics text. */
export async function scrapeMetrics(admin: string): Promise<string> {
  return (await fetch(`http://${admin}/metrics`)).text();
}
