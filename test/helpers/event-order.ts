// Records, in order, what a grpc-js caller can observe of one call, so the
// same scenario run directly over grpc-js and through a tunnel can be
// compared event for event (and tick for tick, with the markers below).
import { credentials, type Metadata, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { EchoClient, EchoService, echoImplementation } from './echo-service.js';
import { forwardFixture, reverseFixture, startServer, stopServer } from './servers.js';

/** The four call kinds, by the echo service's method names. */
export const CALL_KINDS = ['unary', 'clientStream', 'serverStream', 'bidi'] as const;
export type CallKind = (typeof CALL_KINDS)[number];

/** A started call and the log of what the caller saw of it. */
export interface LoggedCall {
  readonly call: { cancel(): void; write?(m: Buffer): boolean; end?(): void };
  readonly log: string[];
  /** Settles once the call's status arrived (the log keeps growing with later events). */
  readonly status: Promise<StatusObject>;
}

/**
 * Starts a call of `kind` the usual grpc-js way (a callback for unary
 * responses, listeners for streams) and logs `metadata`, `data`, `callback:<code>`,
 * `error:<code>`, `status:<code>`, `end` and `close`. Streaming requests get
 * one message written and stay open. `detailed` adds the status details.
 */
export function startLogged(
  client: EchoClient,
  kind: CallKind,
  metadata: Metadata,
  options: { deadline?: Date | number } = {},
  detailed = false,
): LoggedCall {
  const log: string[] = [];
  const describe = (s: { code: number; details: string }) => (detailed ? `${s.code} ${s.details}` : `${s.code}`);
  const callback = (error: ServiceError | null) => log.push(`callback:${error ? describe(error) : 0}`);
  const request = Buffer.from(JSON.stringify({ count: 1, size: 1 }));
  let call: any;
  if (kind === 'unary') call = client.unary(request, metadata, options, callback);
  else if (kind === 'clientStream') call = client.clientStream(metadata, options, callback);
  else if (kind === 'serverStream') call = client.serverStream(request, metadata, options);
  else call = client.bidi(metadata, options);
  call.on('metadata', () => log.push('metadata'));
  if (kind === 'serverStream' || kind === 'bidi') {
    call.on('data', () => log.push('data'));
    call.on('error', (e: ServiceError) => log.push(`error:${describe(e)}`));
    call.on('end', () => log.push('end'));
    call.on('close', () => log.push('close'));
  }
  if (kind === 'clientStream' || kind === 'bidi') call.write(Buffer.from('a'));
  const status = new Promise<StatusObject>((resolve) =>
    call.on('status', (s: StatusObject) => {
      log.push(`status:${describe(s)}`);
      resolve(s);
    }),
  );
  return { call, log, status };
}

/**
 * Runs `act` and marks the log where it returned, and where the next two
 * ticks and the next turn of the event loop begin: a status delivered inside
 * `act` lands before "returned", grpc-js's lands after it.
 */
export function markTicks(log: string[], act: () => void): Promise<void> {
  act();
  log.push('returned');
  process.nextTick(() => {
    log.push('tick1');
    process.nextTick(() => log.push('tick2'));
  });
  return new Promise((resolve) =>
    setImmediate(() => {
      log.push('immediate');
      resolve();
    }),
  );
}

/** Waits until the events a status triggers on the following ticks (end, close) have fired. */
export async function settle(logged: LoggedCall): Promise<void> {
  await logged.status;
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}

/** The three ways to reach the echo service that a differential test compares. */
export interface Routes {
  direct: EchoClient;
  forward: EchoClient;
  pool: EchoClient;
  /** A pool with no tunnel, and a direct client of an address nobody listens on. */
  emptyPool: EchoClient;
  unreachable: EchoClient;
  close(): Promise<void>;
}

/** Starts a grpc-js echo server, a forward tunnel and a reverse-tunnel pool to the same service. */
export async function startRoutes(): Promise<Routes> {
  const plain = await startServer((s) => s.addService(EchoService, echoImplementation()));
  const forward = await forwardFixture();
  const reverse = await reverseFixture();
  const direct = new EchoClient(plain.address, credentials.createInsecure());
  const emptyPool = new EchoClient('empty', credentials.createInsecure(), {
    channelOverride: reverse.handler.keyAsChannel('nobody'),
  });
  // Port 1 on loopback: connections are refused at once.
  const unreachable = new EchoClient('127.0.0.1:1', credentials.createInsecure());
  return {
    direct,
    forward: forward.echo,
    pool: reverse.echo,
    emptyPool,
    unreachable,
    async close() {
      direct.close();
      unreachable.close();
      await forward.close();
      await reverse.close();
      await stopServer(plain.server);
    },
  };
}
