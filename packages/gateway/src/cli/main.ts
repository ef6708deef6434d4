#!/usr/bin/env node
// grpctunnel: the command line. `grpctunnel gateway ...` and `grpctunnel agent ...`.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { resolveKeepalive } from 'grpctunnel/internal';
import { checkMessageSize } from '../gateway/gateway.js';
import {
  AccessFileError,
  AccessPolicy,
  type Agent,
  AgentTokens,
  CallerTokens,
  createLogger,
  type Gateway,
  type GatewayAccess,
  LOG_LEVELS,
  type Logger,
  type LogLevel,
  startAgent,
  startGateway,
} from '../gateway/index.js';
import { splitHostPort } from '../gateway/net.js';
import { parseFlags } from './flags.js';
import { parseKeepaliveFlag } from './keepalive-flag.js';

/** Exit codes (documented in the README). */
const EXIT = { ok: 0, failure: 1, usage: 2, refused: 3, notTunnelEndpoint: 4 } as const;

const USAGE = `usage:
  grpctunnel gateway --listen HOST:PORT --agents HOST:PORT [--admin HOST:PORT]
                     [--token T | --tokens-file F] [--caller-tokens-file F] [--client-ca C]
                     [--policy F] [--tls-cert C --tls-key K] [--replica-id ID --replicas N]
                     [--log-level info]
  grpctunnel agent --gateway HOST:PORT --target HOST:PORT --id NAME [--token T]
                   [--tunnels 2] [--ca C | --insecure] [--max-backoff MS] [--log-level info]
Run "grpctunnel gateway --help" or "grpctunnel agent --help" for details; "grpctunnel --version" for versions.`;

const GATEWAY_HELP = `grpctunnel gateway: accept agents' reverse tunnels and forward gRPC calls for any method to them.

  --listen HOST:PORT     where ordinary gRPC callers connect (required)
  --agents HOST:PORT     where agents open their tunnels (required)
  --admin HOST:PORT      serve /metrics, /healthz (ready), /livez and a status page at /
  --admin-token-file F   / and /metrics ask for the token in this file (authorization: Bearer T);
                         /healthz and /livez stay open for probes
  --token T              a token agents may present (authorization: Bearer T), valid for any agent id
  --tokens-file F        agent tokens, one per line: "TOKEN ID-PATTERN..." (* matches anything);
                         a token may register only the ids it lists; on SIGHUP, tunnels
                         whose token no longer allows their id are closed
  --caller-tokens-file F caller tokens, one per line: "TOKEN CALLER-NAME"
  --client-ca C          ask callers for client certificates signed by this CA (needs --tls-cert)
  --policy F             who may call what: lines "allow CALLER AGENTS [/SERVICE/ or /SERVICE/METHOD ...]";
                         anything not allowed is denied (re-read, with the token files, on SIGHUP)
  --allow-unauthenticated-callers
                         serve callers on a non-loopback --listen without caller authentication
  --forward-caller-auth  forward the caller's authorization header to the target (dropped by default)
  --tls-cert C, --tls-key K
                         serve both gRPC ports over TLS with this certificate and key
  --replica-id ID        this gateway's id among several replicas behind one address
  --replicas N           how many replicas there are (agents keep tunnels to each; default 1)
  --max-conns-per-peer N connections one remote address may hold on each gRPC port (default 256)
  --idle-timeout MS      close connections that send nothing or hold no stream this long (default 300000)
  --ready-after MS       /healthz says ready once an agent attached, or this long after start (default 10000)
  --drain-delay MS       on SIGTERM, say not ready and keep serving this long before refusing connections,
                         so the load balancer stops sending callers first (default 2000 with --replica-id, else 0)
  --grace MS             then let running calls finish this long before cutting them (default 5000)
  --keepalive I[,T]      ping each agent connection every I, drop it when a ping
                         goes unanswered for T (default 15s,10s; "off" disables)
  --max-message-size S   largest request or response a call may carry, in bytes or with
                         KiB/MiB (default 4MiB; raise the agents' --max-message-size too)
  --log-level L          debug, info, warn or error (default info)

Callers choose an agent with the request header "grpctunnel-agent: NAME"; without
it, the call goes to the only agent connected. Without --token or --tokens-file
any agent is accepted. Callers on a non-loopback --listen must authenticate
(--caller-tokens-file and/or --client-ca) unless --allow-unauthenticated-callers.

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 runtime failure (e.g. address in use),
2 bad flags or unreadable files.`;

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
  --max-message-size S   largest request or response a call may carry, in bytes or with
                         KiB/MiB (default 4MiB; raise the gateway's --max-message-size too)
  --log-level L          debug, info, warn or error (default info)

Without --ca or --insecure the gateway connection uses TLS with the system's roots.

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 bad flags or unreadable files,
3 the gateway refused the token, 4 --gateway is not a tunnel endpoint (a plain
gRPC server, or the gateway's --listen port). An unreachable gateway is retried.`;

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

/** A --max-message-size value: bytes, or a number of KiB or MiB ("16MiB"). */
function messageSize(value: string): number {
  const m = /^(\d+)(KiB|MiB)?$/.exec(value.trim());
  const bytes = m ? Number(m[1]) * (m[2] === 'MiB' ? 1024 * 1024 : m[2] === 'KiB' ? 1024 : 1) : Number.NaN;
  try {
    // The same bounds startGateway and startAgent check, said as a usage error.
    checkMessageSize('--max-message-size', bytes);
  } catch {
    fail(
      EXIT.usage,
      `--max-message-size must be a size from 1 byte to 4GiB - 1 (e.g. 16MiB), not ${JSON.stringify(value)}`,
    );
  }
  return bytes;
}

function level(value: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(value))
    fail(EXIT.usage, `--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  return value as LogLevel;
}

/** Checks a host:port flag before anything starts, so a typo is a usage error (exit 2). */
function address(flag: string, value: string): void {
  try {
    splitHostPort(value);
  } catch (err) {
    fail(EXIT.usage, `--${flag}: ${err instanceof Error ? err.message : String(err)}`);
  }
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

/**
 * Says once, at info level, when Node was started without a heap budget.
 * A busy gateway or agent has a small live heap, which V8 can end up marking
 * almost without pause (the interop programs carried half the RPCs that way:
 * README, "Small processes and V8's heap"). Only Node's command line can set it.
 */
function heapHint(logger: Logger): void {
  if (process.execArgv.some((arg) => arg.startsWith('--initial-old-space-size'))) return;
  logger.info(
    'Node was started without --initial-old-space-size; a busy process with a small heap can spend half its ' +
      'time collecting garbage: start it with `node --initial-old-space-size=128` (README: "Small processes and V8\'s heap")',
  );
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
      'admin-token-file': { kind: 'string', default: '', usage: 'admin token file' },
      token: { kind: 'string', default: '', usage: 'agent token' },
      'tokens-file': { kind: 'string', default: '', usage: 'agent tokens file' },
      'caller-tokens-file': { kind: 'string', default: '', usage: 'caller tokens file' },
      'client-ca': { kind: 'string', default: '', usage: 'CA of caller certificates' },
      policy: { kind: 'string', default: '', usage: 'policy file' },
      'allow-unauthenticated-callers': { kind: 'bool', default: false, usage: 'no caller authentication' },
      'forward-caller-auth': { kind: 'bool', default: false, usage: 'forward authorization' },
      'tls-cert': { kind: 'string', default: '', usage: 'TLS certificate' },
      'tls-key': { kind: 'string', default: '', usage: 'TLS key' },
      'replica-id': { kind: 'string', default: '', usage: 'replica id' },
      replicas: { kind: 'int', default: 1, usage: 'replica count' },
      'max-conns-per-peer': { kind: 'int', default: 256, usage: 'connections per peer' },
      'idle-timeout': { kind: 'int', default: 300_000, usage: 'idle timeout (ms)' },
      'ready-after': { kind: 'int', default: 10_000, usage: 'readiness grace (ms)' },
      'drain-delay': { kind: 'int', default: -1, usage: 'serving time after SIGTERM (ms)' },
      grace: { kind: 'int', default: 5000, usage: 'time for running calls at shutdown (ms)' },
      'max-message-size': { kind: 'string', default: '4MiB', usage: 'message size limit' },
      'log-level': { kind: 'string', default: 'info', usage: 'log level' },
      keepalive: { kind: 'string', default: '15s,10s', usage: 'ping interval[,timeout] or off' },
    },
    argv,
  );
  if (!f.listen || !f.agents) fail(EXIT.usage, 'gateway needs --listen and --agents (see --help)');
  address('listen', f.listen);
  address('agents', f.agents);
  if (f.admin) address('admin', f.admin);
  if (f['admin-token-file'] && !f.admin) fail(EXIT.usage, '--admin-token-file needs --admin');
  const adminToken = f['admin-token-file']
    ? read(f['admin-token-file'], 'admin token file').toString('utf8').trim()
    : '';
  if (f['admin-token-file'] && !/^\S+$/.test(adminToken)) {
    fail(EXIT.usage, `${f['admin-token-file']}: the admin token file must hold one token (no spaces)`);
  }
  const logLevel = level(f['log-level']);
  if (Boolean(f['tls-cert']) !== Boolean(f['tls-key'])) fail(EXIT.usage, '--tls-cert and --tls-key go together');
  if (f['client-ca'] && !f['tls-cert']) fail(EXIT.usage, '--client-ca needs --tls-cert and --tls-key');
  if (f.token && f['tokens-file']) fail(EXIT.usage, 'use --token or --tokens-file, not both');
  if (f.replicas < 1 || f.replicas > 64) fail(EXIT.usage, '--replicas must be between 1 and 64');
  if (f.replicas > 1 && !f['replica-id']) fail(EXIT.usage, '--replicas above 1 needs --replica-id');
  if (f['max-conns-per-peer'] < 1) fail(EXIT.usage, '--max-conns-per-peer must be at least 1');
  if (f['idle-timeout'] < 100) fail(EXIT.usage, '--idle-timeout must be at least 100 (ms)');
  if (f['ready-after'] < 0) fail(EXIT.usage, '--ready-after must not be negative');
  // Durations end up in timers, which hold up to 2^31 - 1 ms (about 24.8 days).
  const MAX_MS = 2_147_483_647;
  for (const name of ['ready-after', 'idle-timeout', 'grace'] as const) {
    if (f[name] > MAX_MS) fail(EXIT.usage, `--${name} must be at most ${MAX_MS} (ms)`);
  }
  if (f['drain-delay'] > MAX_MS) fail(EXIT.usage, `--drain-delay must be at most ${MAX_MS} (ms)`);
  if (f['drain-delay'] < -1) fail(EXIT.usage, '--drain-delay must not be negative');
  if (f.grace < 0) fail(EXIT.usage, '--grace must not be negative');
  // Replicas sit behind a balancer, which needs a moment to stop sending callers.
  const drainDelayMs = f['drain-delay'] >= 0 ? f['drain-delay'] : f['replica-id'] ? 2000 : 0;
  const maxMessageSize = messageSize(f['max-message-size']);
  /** Reads the token files and the policy; throws AccessFileError or a read error. */
  const loadAccess = (readText: (path: string, what: string) => string): GatewayAccess => ({
    ...(f.token && { agentTokens: AgentTokens.anyId([f.token]) }),
    ...(f['tokens-file'] && {
      agentTokens: AgentTokens.parse(readText(f['tokens-file'], 'tokens file'), f['tokens-file']),
    }),
    ...(f['caller-tokens-file'] && {
      callerTokens: CallerTokens.parse(
        readText(f['caller-tokens-file'], 'caller tokens file'),
        f['caller-tokens-file'],
      ),
    }),
    ...(f.policy && { policy: AccessPolicy.parse(readText(f.policy, 'policy file'), f.policy) }),
  });
  let access: GatewayAccess;
  try {
    access = loadAccess((path, what) => read(path, what).toString('utf8'));
  } catch (err) {
    fail(EXIT.usage, err instanceof Error ? err.message : String(err));
  }
  const tls = f['tls-cert'] ? { cert: read(f['tls-cert'], 'certificate'), key: read(f['tls-key'], 'key') } : undefined;
  const logger = createLogger(logLevel);
  heapHint(logger);
  // Signals are handled before the gateway starts: it logs (warnings, its
  // addresses) while starting, and whoever reads them may signal it at once.
  let starting: Promise<Gateway> = new Promise(() => {});
  onSignals(() =>
    starting.then(
      (g) => g.close({ graceMs: f.grace }),
      () => undefined,
    ),
  );
  starting = startGateway({
    listen: f.listen,
    agents: f.agents,
    ...(f.admin ? { admin: f.admin } : {}),
    ...(adminToken ? { adminToken } : {}),
    access,
    ...(tls ? { tls } : {}),
    ...(f['client-ca'] ? { clientCa: read(f['client-ca'], 'client CA') } : {}),
    allowUnauthenticatedCallers: f['allow-unauthenticated-callers'],
    forwardCallerAuth: f['forward-caller-auth'],
    ...(f['replica-id'] ? { replica: { id: f['replica-id'], count: f.replicas } } : {}),
    limits: { maxConnectionsPerPeer: f['max-conns-per-peer'], idleTimeoutMs: f['idle-timeout'] },
    readyAfterMs: f['ready-after'],
    drainDelayMs,
    maxMessageSize,
    logger,
    keepalive: keepalive(f.keepalive),
  });
  // SIGHUP: re-read the token files and the policy; a file that does not
  // parse is reported and the rules in force stay.
  process.on('SIGHUP', () => {
    void starting.then(
      (running) => {
        try {
          running.reload(
            loadAccess((path) => {
              try {
                return readFileSync(path, 'utf8');
              } catch (err) {
                throw new AccessFileError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
              }
            }),
          );
        } catch (err) {
          logger.error(`reload failed, the previous rules stay: ${err instanceof Error ? err.message : String(err)}`);
        }
      },
      () => undefined,
    );
  });
  try {
    await starting;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    fail(message.startsWith('refusing to serve callers') ? EXIT.usage : EXIT.failure, message);
  }
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
      'max-message-size': { kind: 'string', default: '4MiB', usage: 'message size limit' },
      'log-level': { kind: 'string', default: 'info', usage: 'log level' },
      keepalive: { kind: 'string', default: '15s,10s', usage: 'ping interval[,timeout] or off' },
    },
    argv,
  );
  if (!f.gateway || !f.target || !f.id) fail(EXIT.usage, 'agent needs --gateway, --target and --id (see --help)');
  address('gateway', f.gateway);
  address('target', f.target);
  if (f.ca && f.insecure) fail(EXIT.usage, 'use --ca or --insecure, not both');
  if (f.tunnels < 1 || f.tunnels > 100) fail(EXIT.usage, '--tunnels must be between 1 and 100');
  if (f['max-backoff'] < 10) fail(EXIT.usage, '--max-backoff must be at least 10 (ms)');
  const maxMessageSize = messageSize(f['max-message-size']);
  const logger = createLogger(level(f['log-level']));
  heapHint(logger);
  let running: Agent;
  try {
    running = startAgent({
      gateway: f.gateway,
      target: f.target,
      id: f.id,
      ...(f.token ? { token: f.token } : {}),
      tunnels: f.tunnels,
      security: f.insecure ? { insecure: true } : f.ca ? { ca: read(f.ca, 'CA certificate') } : {},
      logger,
      keepalive: keepalive(f.keepalive),
      maxMessageSize,
      backoff: { initialDelayMs: Math.min(1000, f['max-backoff']), maxDelayMs: f['max-backoff'] },
    });
  } catch (err) {
    fail(EXIT.usage, err instanceof Error ? err.message : String(err));
  }
  onSignals(() => running.stop());
  // An agent has nothing to re-read; a hangup (its terminal closing, or a
  // SIGHUP meant for the gateway) must not end it, as Node's default would.
  process.on('SIGHUP', () => {});
  const error = await running.done;
  if (error) fail(error.reason === 'refused' ? EXIT.refused : EXIT.notTunnelEndpoint, error.message);
}

/** `grpctunnel --version`: this package's version and the library's it runs on (they can differ after an override). */
function versions(): string {
  const require = createRequire(import.meta.url);
  const version = (manifest: string) => (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
  const own = version(fileURLToPath(new URL('../../package.json', import.meta.url)));
  return `grpctunnel-gateway ${own} (grpctunnel ${version(require.resolve('grpctunnel/package.json'))}, Node.js ${process.versions.node})`;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  try {
    if (command === 'gateway') await gateway(rest);
    else if (command === 'agent') await agent(rest);
    else if (command === '--help' || command === '-h' || command === 'help') process.stdout.write(`${USAGE}\n`);
    else if (command === '--version' || command === '-v' || command === 'version')
      process.stdout.write(`${versions()}\n`);
    else fail(EXIT.usage, command ? `unknown command "${command}"\n${USAGE}` : USAGE);
  } catch (err) {
    fail(EXIT.usage, err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err));
  }
}

void main();
