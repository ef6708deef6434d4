import { EventEmitter } from 'node:events';
import {
  type CallOptions,
  type ChannelInterface,
  Client,
  Metadata,
  type ServiceError,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { statusError } from '../errors.js';

// A bidi-streaming client call made on the channel's own call object
// (`ChannelInterface.createCall`, public grpc-js API) instead of through
// `Client.makeBidiStreamRequest`. The tunnel RPC is one long stream carrying
// one message per frame, and grpc-js's client surface costs per message: a
// Node Duplex (objectMode buffers, nextTick per write callback and read) and
// the interceptor layer. Here frames go straight to the call and the next
// read is asked for as soon as a frame was handed on. It emits the events of
// a ClientDuplexStream the tunnel listens to, in the same order, so the code
// above does not know which one it has.

/** Queued messages past which write() says to wait, as a ClientDuplexStream (objectMode) does. */
const QUEUE_HIGH_WATER_MARK = 16;

/** A grpc-js channel-level call (what `ChannelInterface.createCall` returns). */
type ChannelCall = ReturnType<ChannelInterface['createCall']>;

/**
 * What the tunnel uses of its RPC's client call: a subset of grpc-js's
 * `ClientDuplexStream`, which {@link LeanDuplexCall} also provides.
 */
export interface TunnelRpcCall<Out, In> {
  /** Sends a frame; `callback` runs once the transport took it. */
  write(frame: Out, callback?: () => void): boolean;
  /** Half-closes. */
  end(): unknown;
  /** Cancels (CANCELLED, an HTTP/2 reset once the stream exists). */
  cancel(): void;
  /** Reads on (what the server still sends is dropped by the listeners). */
  resume(): unknown;
  /** The server's address. */
  getPeer(): string;
  /** The connection's authentication context, when grpc-js has one. */
  getAuthContext?(): ReturnType<ChannelCall['getAuthContext']>;
  on(event: 'metadata', listener: (headers: Metadata) => void): unknown;
  on(event: 'data', listener: (frame: In) => void): unknown;
  on(event: 'status', listener: (status: StatusObject) => void): unknown;
  on(event: 'error', listener: (error: ServiceError) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  once(event: 'metadata' | 'status', listener: () => void): unknown;
}

/** Options of {@link LeanDuplexCall}. */
export interface LeanCallOptions<Out, In> {
  readonly channel: ChannelInterface;
  readonly path: string;
  readonly serialize: (value: Out) => Buffer;
  readonly deserialize: (bytes: Buffer) => In;
  readonly metadata: Metadata;
  readonly callOptions: CallOptions;
}

/**
 * Whether a tunnel RPC made with `client` and `callOptions` would run no
 * user code between the tunnel and the channel, so that {@link LeanDuplexCall}
 * behaves as `makeBidiStreamRequest` would. grpc-js keeps a Client's
 * interceptors, interceptor providers and call invocation transformer in
 * properties keyed by module-private symbols (client.js): they are read
 * through `Object.getOwnPropertySymbols` and must all be empty. Anything
 * unexpected (another grpc-js layout, a subclass that overrides
 * `makeBidiStreamRequest`, a value of another kind) means no.
 */
export function hasNoInterceptors(client: Client, callOptions: CallOptions): boolean {
  if (!(client instanceof Client)) return false;
  if (client.makeBidiStreamRequest !== Client.prototype.makeBidiStreamRequest) return false;
  if (nonEmpty(callOptions.interceptors) || nonEmpty(callOptions.interceptor_providers)) return false;
  const channel = client.getChannel();
  let emptyLists = 0;
  let channels = 0;
  for (const key of Object.getOwnPropertySymbols(client)) {
    const value = (client as unknown as Record<symbol, unknown>)[key];
    if (value === undefined) continue; // no call invocation transformer
    if (value === channel) channels++;
    else if (Array.isArray(value) && value.length === 0) emptyLists++;
    else return false;
  }
  // grpc-js 1.x: the channel, the interceptor list and the provider list.
  return channels === 1 && emptyLists === 2;
}

function nonEmpty(list: unknown): boolean {
  return list !== undefined && list !== null && !(Array.isArray(list) && list.length === 0);
}

/**
 * A bidi-streaming call on the channel's call object, with the events and
 * methods of a `ClientDuplexStream` that {@link TunnelRpcCall} lists. Reads
 * continuously (the tunnel's own flow control bounds what the server sends);
 * writes go to the call at once and complete through their callbacks.
 */
export class LeanDuplexCall<Out, In> extends EventEmitter implements TunnelRpcCall<Out, In> {
  /** The channel's call; named `call` like grpc-js's, so call-session.ts finds the HTTP/2 session under it. */
  readonly call: ChannelCall;
  private readonly serialize: (value: Out) => Buffer;
  private statusReceived = false;
  private halfClosed = false;
  private reading = false;
  /** A message is with the call, its callback not yet run. */
  private sending = false;
  private halfClosePending = false;
  private readonly queue: Array<{ bytes: Buffer; callback: (() => void) | undefined }> = [];

  constructor(options: LeanCallOptions<Out, In>) {
    super();
    const { callOptions } = options;
    this.serialize = options.serialize;
    // The same arguments grpc-js's bottom interceptor passes (client-interceptors.js getCall).
    this.call = options.channel.createCall(
      options.path,
      callOptions.deadline ?? Number.POSITIVE_INFINITY,
      callOptions.host,
      callOptions.parent ?? null,
      callOptions.propagate_flags,
    );
    if (callOptions.credentials) this.call.setCredentials(callOptions.credentials);
    const deserialize = options.deserialize;
    let readError: StatusObject | undefined;
    this.call.start(options.metadata, {
      onReceiveMetadata: (headers) => this.emit('metadata', headers),
      onReceiveMessage: (bytes: Buffer) => {
        let frame: In;
        try {
          frame = deserialize(bytes);
        } catch (err) {
          // As grpc-js does: the call fails with INTERNAL.
          readError = {
            code: Status.INTERNAL,
            details: `Response message parsing error: ${err instanceof Error ? err.message : String(err)}`,
            metadata: new Metadata(),
          };
          this.call.cancelWithStatus(readError.code, readError.details);
          return;
        }
        this.emit('data', frame);
        if (!this.statusReceived) this.call.startRead();
      },
      onReceiveStatus: (status) => this.onStatus(readError ?? status),
    });
    // Like a Readable, reads begin with the first 'data' listener (or resume()):
    // until then grpc-js holds what arrives, so no frame is lost.
    this.on('newListener', this.onNewListener);
  }

  private readonly onNewListener = (event: string | symbol) => {
    if (event === 'data') this.startReading();
  };

  private startReading(): void {
    if (this.reading) return;
    this.reading = true;
    this.off('newListener', this.onNewListener);
    this.call.startRead();
  }

  private onStatus(status: StatusObject): void {
    if (this.statusReceived) return;
    this.statusReceived = true;
    // ClientDuplexStream's order: 'error' (not OK) and 'status' at once, 'end' once the readable side ends.
    if (status.code !== Status.OK) {
      this.emit('error', Object.assign(statusError(status.code, status.details, status.metadata), status));
    }
    this.emit('status', status);
    process.nextTick(() => this.emit('end'));
  }

  write(frame: Out, callback?: () => void): boolean {
    if (this.halfClosed) {
      if (callback) process.nextTick(callback);
      return true;
    }
    let bytes: Buffer;
    try {
      bytes = this.serialize(frame);
    } catch (err) {
      this.call.cancelWithStatus(
        Status.INTERNAL,
        `Request message serialization failure: ${err instanceof Error ? err.message : String(err)}`,
      );
      if (callback) process.nextTick(callback);
      return true;
    }
    if (this.sending) this.queue.push({ bytes, callback });
    else this.send(bytes, callback);
    return this.queue.length < QUEUE_HIGH_WATER_MARK;
  }

  /**
   * One message at a time, as grpc-js's Writable gives them: the channel's
   * call stack assumes it (the resolving call keeps a single "write pending"
   * flag, and a half-close behind two pending writes would overtake the second).
   */
  private send(bytes: Buffer, callback: (() => void) | undefined): void {
    this.sending = true;
    this.call.sendMessageWithContext(
      {
        callback: () => {
          this.sending = false;
          const next = this.queue.shift();
          if (next) this.send(next.bytes, next.callback);
          else if (this.halfClosePending) this.call.halfClose();
          callback?.();
        },
      },
      bytes,
    );
  }

  end(): void {
    if (this.halfClosed) return;
    this.halfClosed = true;
    // After the writes already given, like a Writable's end().
    if (this.sending) this.halfClosePending = true;
    else this.call.halfClose();
  }

  cancel(): void {
    this.call.cancelWithStatus(Status.CANCELLED, 'Cancelled on client');
  }

  resume(): this {
    this.startReading();
    return this;
  }

  getPeer(): string {
    return this.call.getPeer();
  }

  getAuthContext(): ReturnType<ChannelCall['getAuthContext']> {
    return this.call.getAuthContext();
  }
}
