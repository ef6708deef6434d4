// A raw-bytes test service: messages are Buffers passed through unchanged,
// so tests control exact sizes (empty, 1 byte, 16 KiB, 4 MiB). Tests wait on
// what its handlers do (handlerStarted, handlerCancelled) and decide when a
// held unary call answers (x-hold, release) instead of sleeping.
import { EventEmitter } from 'node:events';
import {
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  makeGenericClientConstructor,
  type ServiceDefinition,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { getTunnelInfo, type TunnelInfo } from 'grpctunnel';
import { methodDefinition, rawBytesCodec } from './method-definition.js';

const method = (name: string, requestStream: boolean, responseStream: boolean) =>
  methodDefinition('test.Echo', name, requestStream, responseStream, rawBytesCodec);

export const EchoService = {
  unary: method('Unary', false, false),
  clientStream: method('ClientStream', true, false),
  serverStream: method('ServerStream', false, true),
  bidi: method('Bidi', true, true),
  stall: method('Stall', true, true),
  flood: method('Flood', false, true),
} satisfies ServiceDefinition;

/** A client of the echo service (methods unary, clientStream, serverStream, bidi). */
export type EchoClient = Client & Record<string, any>;

export const EchoClient = makeGenericClientConstructor(EchoService, 'Echo') as unknown as new (
  address: string,
  creds: ChannelCredentials,
  options?: ClientOptions,
) => EchoClient;

/** Response headers: request headers named x-echo-*; trailers: x-trailer-*. */
function split(md: Metadata) {
  const headers = new Metadata();
  const trailers = new Metadata();
  for (const [key, values] of Object.entries(md.toJSON())) {
    for (const v of values as Array<string | Buffer>) {
      if (key.startsWith('x-echo-')) headers.add(key, v);
      if (key.startsWith('x-trailer-')) trailers.add(key, v);
    }
  }
  return { headers, trailers };
}

/** The error a request asked for with x-status-code (and x-status-message, x-status-details-bin). */
function requestedError(md: Metadata, trailers: Metadata): Partial<ServiceError> | null {
  const code = md.get('x-status-code')[0];
  if (code === undefined) return null;
  const t = trailers.clone();
  const details = md.get('x-status-details-bin')[0];
  if (details) t.set('grpc-status-details-bin', details as Buffer);
  // x-status-message-bin carries messages a text header cannot (UTF-8, edge spaces).
  const binary = md.get('x-status-message-bin')[0];
  const message = binary ? binary.toString() : String(md.get('x-status-message')[0] ?? 'failed');
  return { code: Number(code), details: message, metadata: t };
}

function delay(md: Metadata): number {
  return Number(md.get('x-delay-ms')[0] ?? 0);
}

export interface EchoObservations {
  /** Calls whose handler saw cancellation, by method name. */
  cancelled: string[];
  /** Calls whose handler started, by method name, in order. */
  started?: string[];
  /** Metadata of the last call. */
  lastMetadata?: Metadata;
  /** Deadline the last call saw. */
  lastDeadline?: Date | number;
  /** Peer the last call saw. */
  lastPeer?: string;
  /** The tunnel that carried the last call, as getTunnelInfo() reports it. */
  lastTunnel?: TunnelInfo | undefined;
  /** Writes a Flood handler made after its call ended (should stay 0). */
  writesAfterEnd?: number;
}

/** The echo service's method names, as `started` and `cancelled` record them. */
export type EchoMethod = keyof typeof EchoService;

const releasedAlready = new WeakSet<EchoObservations>();

// Events per observations object ('started', 'cancelled', 'release'), kept
// beside it so tests may keep passing plain `{ cancelled: [] }` literals.
const signals = new WeakMap<EchoObservations, EventEmitter>();
function signalsOf(seen: EchoObservations): EventEmitter {
  let emitter = signals.get(seen);
  if (!emitter) {
    emitter = new EventEmitter();
    emitter.setMaxListeners(0);
    signals.set(seen, emitter);
  }
  return emitter;
}

/** Resolves once `count` entries of `list` name `method` (at once if they already do). */
function waitForEntries(seen: EchoObservations, event: string, list: () => string[], method: string, count: number) {
  const emitter = signalsOf(seen);
  return new Promise<void>((resolve) => {
    const check = () => {
      if (countOf(list(), method) < count) return;
      emitter.off(event, check);
      resolve();
    };
    emitter.on(event, check);
    check();
  });
}

/** Resolves once `count` handlers of `method` have started, i.e. the call reached the service. */
export function handlerStarted(seen: EchoObservations, method: EchoMethod, count = 1): Promise<void> {
  return waitForEntries(seen, 'started', () => seen.started ?? [], method, count);
}

/** Resolves once `count` handlers of `method` have seen their call cancelled. */
export function handlerCancelled(seen: EchoObservations, method: EchoMethod, count = 1): Promise<void> {
  return waitForEntries(seen, 'cancelled', () => seen.cancelled, method, count);
}

const countOf = (list: string[] | undefined, method: string) => (list ?? []).filter((m) => m === method).length;

/** Resolves once one more handler of `method` than now has started: for a service other tests used before. */
export function nextHandlerStarted(seen: EchoObservations, method: EchoMethod): Promise<void> {
  return handlerStarted(seen, method, countOf(seen.started, method) + 1);
}

/** Resolves once one more handler of `method` than now has seen cancellation. */
export function nextHandlerCancelled(seen: EchoObservations, method: EchoMethod): Promise<void> {
  return handlerCancelled(seen, method, countOf(seen.cancelled, method) + 1);
}

/**
 * Lets every unary call sent with the `x-hold` header answer: those held now
 * and those that arrive later. A test holds a call to keep it running for as
 * long as it needs, rather than guessing a delay long enough.
 */
export function release(seen: EchoObservations): void {
  releasedAlready.add(seen);
  signalsOf(seen).emit('release');
}

/** The implementation; `seen` records what handlers observed. */
export function echoImplementation(seen: EchoObservations = { cancelled: [] }) {
  const emitter = signalsOf(seen);
  const cancelled = (method: EchoMethod) => {
    seen.cancelled.push(method);
    emitter.emit('cancelled');
  };
  const observe = (
    method: EchoMethod,
    call: {
      metadata: Metadata;
      getDeadline(): Date | number;
      getPeer(): string;
      getAuthContext(): unknown;
    },
  ) => {
    seen.started ??= [];
    seen.started.push(method);
    // Emitted after the observations below are recorded, for a test that reads them.
    process.nextTick(() => emitter.emit('started'));
    seen.lastTunnel = getTunnelInfo(call);
    seen.lastMetadata = call.metadata;
    seen.lastDeadline = call.getDeadline();
    seen.lastPeer = call.getPeer();
  };
  const unary: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
    observe('unary', call);
    const { headers, trailers } = split(call.metadata);
    call.sendMetadata(headers);
    const answer = () => {
      const err = requestedError(call.metadata, trailers);
      if (err) callback(err as ServiceError);
      else callback(null, call.request, trailers);
    };
    let timer: NodeJS.Timeout | undefined;
    const held = call.metadata.get('x-hold').length > 0 && !releasedAlready.has(seen);
    const onRelease = () => answer();
    if (held) emitter.once('release', onRelease);
    else timer = setTimeout(answer, delay(call.metadata));
    call.on('cancelled', () => {
      clearTimeout(timer);
      emitter.off('release', onRelease);
      cancelled('unary');
    });
  };
  const clientStream: handleClientStreamingCall<Buffer, Buffer> = (call, callback) => {
    observe('clientStream', call);
    const { headers, trailers } = split(call.metadata);
    call.sendMetadata(headers);
    let count = 0;
    let total = 0;
    call.on('data', (b: Buffer) => {
      count++;
      total += b.length;
    });
    call.on('cancelled', () => cancelled('clientStream'));
    call.on('end', () => {
      const err = requestedError(call.metadata, trailers);
      if (err) callback(err as ServiceError);
      else callback(null, Buffer.from(JSON.stringify({ count, total })), trailers);
    });
  };
  const serverStream: handleServerStreamingCall<Buffer, Buffer> = (call) => {
    observe('serverStream', call);
    const { headers, trailers } = split(call.metadata);
    call.sendMetadata(headers);
    const { count, size } = JSON.parse(call.request.toString() || '{"count":0,"size":0}') as {
      count: number;
      size: number;
    };
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    call.on('cancelled', () => {
      if (timer) clearTimeout(timer);
      cancelled('serverStream');
    });
    const step = () => {
      if (call.cancelled) return;
      while (i < count) {
        const ok = call.write(Buffer.alloc(size, i % 256));
        i++;
        if (!ok) {
          call.once('drain', step);
          return;
        }
      }
      const err = requestedError(call.metadata, trailers);
      if (err) call.emit('error', err);
      else call.end(trailers);
    };
    timer = setTimeout(step, delay(call.metadata));
  };
  const bidi: handleBidiStreamingCall<Buffer, Buffer> = (call) => {
    observe('bidi', call);
    const { headers, trailers } = split(call.metadata);
    call.sendMetadata(headers);
    call.on('data', (b: Buffer) => call.write(b));
    call.on('cancelled', () => cancelled('bidi'));
    call.on('end', () => {
      const err = requestedError(call.metadata, trailers);
      if (err) call.emit('error', err);
      else call.end(trailers);
    });
  };
  // Never reads: its requests pile up against the flow-control window.
  const stall: handleBidiStreamingCall<Buffer, Buffer> = (call) => {
    observe('stall', call);
    call.on('cancelled', () => cancelled('stall'));
  };
  // Writes as fast as the stream takes messages until the call ends; counts
  // writes that still "succeed" after it ended (a loop that would spin). Bounded.
  const flood: handleServerStreamingCall<Buffer, Buffer> = (call) => {
    observe('flood', call);
    const message = Buffer.alloc(100_000, 1);
    let ended = false;
    seen.writesAfterEnd = 0;
    call.on('cancelled', () => {
      ended = true;
      cancelled('flood');
    });
    const pump = () => {
      for (let i = 0; i < 100_000 && !call.cancelled && !call.destroyed; i++) {
        if (ended) seen.writesAfterEnd = (seen.writesAfterEnd ?? 0) + 1;
        if (!call.write(message)) {
          call.once('drain', pump);
          return;
        }
      }
    };
    pump();
  };
  return { unary, clientStream, serverStream, bidi, stall, flood };
}

export { status };
