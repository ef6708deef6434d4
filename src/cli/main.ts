#!/usr/bin/env node
// grpctunnel: the command line. `grpctunnel gateway ...` and `grpctunnel agent ...`.
import { readFileSync } from 'node:fs';
import { resolveKeepalive } from '../grpc/keepalive.js';
import { type Agent, startAgent } from './agent.js';
import { parseFlags } from './flags.js';
import { type Gateway, startGateway } from './gateway.js';
import { parseKeepaliveFlag } from './keepalive-flag.js';
import { createLogger, LEVELS, type Level } from './logger.js';

/** Exit codes (documented in the README). */
const EXIT = { ok: 0, failure: 1, usage: 2, refused: 3 } as const;

const USAGE = `usage:
  grpctunnel gateway --listen HOST:PORT --agents HOST:PORT [--admin HOST:PORT]
                     [--token T | --tokens-file F] [--tls-cert C --tls-key K] [--log-level info]
  grpctunnel agent --gateway HOST:PORT --target HOST:PORT --id NAME [--token T]
                   [--tunnels 2] [--ca C | --insecure] [--max-backoff MS] [--log-level info]
Run "grpctunnel gateway --help" or "grpctunnel agent --help" for details.`;

const GATEWAY_HELP = `grpctunnel gateway: accept agents' reverse tunnels and forward gRPC calls for any method to them.

  --listen HOST:PORT     where ordinary gRPC callers connect (required)
  --agents HOST:PORT     where agents open their tunnels (required)
  --admin HOST:PORT      serve /metrics, /healthz and a status page at /
  --token T              the token agents must present (authorization: Bearer T)
  --tokens-file F        accepted tokens, one per line (# starts a comment)
  --tls-cert C, --tls-key K
                         serve both gRPC ports over TLS with this certificate and key
  --keepalive I[,T]      ping each agent connection every I, drop it when a ping
                         goes unanswered for T (default 15s,10s; "off" disables)
  --log-level L          debug, info, warn or error (default info)

Callers choose an agent with the request header "grpctunnel-agent: NAME"; without
it, the call goes to the only agent connected. Without --token or --tokens-file
any agent is accepted.`;

const AGENT_HELP = `grpctunnel agent: expose a gRPC server through a gateway, dialing out.

  --gateway HOST:PORT    the gateway's agents port (required)
  --target HOST:PORT     the gRPC server to expose, plaintext (required)
  --id NAME              this agent's id, which callers route by (required)
  --token T              token to present to the gateway
  --tunnels N            tunnels to keep open (default 2)
  --ca C                 trust this CA for the gateway's TLS certificate
  --insecure             connect to the gateway without TLS
  --max-backoff MS       longest wait between reconnection attempts (default 30000)
  --keepalive I[,T]      ping the gateway every I (5m10s unless it allows faster),
                         reconnect when a ping goes unanswered for T (default 15s,10s;
                         "off" disables)
  --log-level L          debug, info, warn or error (default info)

Without --ca or --insecure the gateway connection uses TLS with the system's roots.`;

function fail(code: number, message: string): never {
  process.stderr.write(`grpctunnel: ${message}\n`);
  process.exit(code);
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    fail(EXIT.usage, `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

function level(value: string): Level {
  if (!(LEVELS as readonly string[]).includes(value))
    fail(EXIT.usage, `--log-level must be one of ${LEVELS.join(', ')}`);
  return value as Level;
}

function keepalive(value: string): ReturnType<typeof parseKeepaliveFlag> {
  try {
    const options = parseKeepaliveFlag(value);
    resolveKeepalive(options); // range errors are usage errors too
    return options;
  } catch (err) {
    fail(EXIT.usage, err instanceof Error ? err.message : String(err));
  }
}

function onSignals(stop: () => Promise<unknown>): void {
  let stopping = false;
  const handle = () => {
    if (stopping) process.exit(EXIT.failure);
    stopping = true;
    stop().then(() => process.exit(EXIT.ok));
  };
  process.on('SIGINT', handle);
  process.on('SIGTERM', handle);
}

async function gateway(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${GATEWAY_HELP}\n`);
    return;
  }
  const f = parseFlags(
    {
      listen: { kind: 'string', default: '', usage: 'caller address' },
      agents: { kind: 'string', default: '', usage: 'agents address' },
      admin: { kind: 'string', default: '', usage: 'admin address' },
      token: { kind: 'string', default: '', usage: 'agent token' },
      'tokens-file': { kind: 'string', default: '', usage: 'agent tokens file' },
      'tls-cert': { kind: 'string', default: '', usage: 'TLS certificate' },
      'tls-key': { kind: 'string', default: '', usage: 'TLS key' },
      'log-level': { kind: 'string', default: 'info', usage: 'log level' },
      keepalive: { kind: 'string', default: '15s,10s', usage: 'ping interval[,timeout] or off' },
    },
    argv,
  );
  if (!f.listen || !f.agents) fail(EXIT.usage, 'gateway needs --listen and --agents (see --help)');
  if (Boolean(f['tls-cert']) !== Boolean(f['tls-key'])) fail(EXIT.usage, '--tls-cert and --tls-key go together');
  if (f.token && f['tokens-file']) fail(EXIT.usage, 'use --token or --tokens-file, not both');
  const tokens = new Set<string>();
  if (f.token) tokens.add(f.token);
  if (f['tokens-file']) {
    for (const line of read(f['tokens-file'], 'tokens file').toString('utf8').split('\n')) {
      const token = line.replace(/#.*/, '').trim();
      if (token) tokens.add(token);
    }
    if (tokens.size === 0) fail(EXIT.usage, `no tokens in ${f['tokens-file']}`);
  }
  const tls = f['tls-cert'] ? { cert: read(f['tls-cert'], 'certificate'), key: read(f['tls-key'], 'key') } : undefined;
  let running: Gateway;
  try {
    running = await startGateway({
      listen: f.listen,
      agents: f.agents,
      ...(f.admin ? { admin: f.admin } : {}),
      tokens,
      ...(tls ? { tls } : {}),
      logger: createLogger(level(f['log-level'])),
      keepalive: keepalive(f.keepalive),
    });
  } catch (err) {
    fail(EXIT.failure, err instanceof Error ? err.message : String(err));
  }
  onSignals(() => running.close());
}

async function agent(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${AGENT_HELP}\n`);
    return;
  }
  const f = parseFlags(
    {
      gateway: { kind: 'string', default: '', usage: 'gateway address' },
      target: { kind: 'string', default: '', usage: 'target address' },
      id: { kind: 'string', default: '', usage: 'agent id' },
      token: { kind: 'string', default: '', usage: 'token' },
      tunnels: { kind: 'int', default: 2, usage: 'tunnels' },
      ca: { kind: 'string', default: '', usage: 'CA certificate' },
      insecure: { kind: 'bool', default: false, usage: 'no TLS' },
      'max-backoff': { kind: 'int', default: 30_000, usage: 'max reconnect delay' },
      'log-level': { kind: 'string', default: 'info', usage: 'log level' },
      keepalive: { kind: 'string', default: '15s,10s', usage: 'ping interval[,timeout] or off' },
    },
    argv,
  );
  if (!f.gateway || !f.target || !f.id) fail(EXIT.usage, 'agent needs --gateway, --target and --id (see --help)');
  if (f.ca && f.insecure) fail(EXIT.usage, 'use --ca or --insecure, not both');
  if (f.tunnels < 1 || f.tunnels > 100) fail(EXIT.usage, '--tunnels must be between 1 and 100');
  if (f['max-backoff'] < 10) fail(EXIT.usage, '--max-backoff must be at least 10 (ms)');
  let running: Agent;
  try {
    running = startAgent({
      gateway: f.gateway,
      target: f.target,
      id: f.id,
      ...(f.token ? { token: f.token } : {}),
      tunnels: f.tunnels,
      security: f.insecure ? { insecure: true } : f.ca ? { ca: read(f.ca, 'CA certificate') } : {},
      logger: createLogger(level(f['log-level'])),
      keepalive: keepalive(f.keepalive),
      backoff: { initialDelayMs: Math.min(1000, f['max-backoff']), maxDelayMs: f['max-backoff'] },
    });
  } catch (err) {
    fail(EXIT.usage, err instanceof Error ? err.message : String(err));
  }
  onSignals(() => running.stop());
  const error = await running.done;
  if (error) fail(EXIT.refused, error.message);
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  try {
    if (command === 'gateway') await gateway(rest);
    else if (command === 'agent') await agent(rest);
    else if (command === '--help' || command === '-h' || command === 'help') process.stdout.write(`${USAGE}\n`);
    else fail(EXIT.usage, command ? `unknown command "${command}"\n${USAGE}` : USAGE);
  } catch (err) {
    fail(EXIT.usage, err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err));
  }
}

void main();
