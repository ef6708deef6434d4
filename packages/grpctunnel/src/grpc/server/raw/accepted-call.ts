import { EventEmitter } from 'node:events';
import { type Http2Session, constants as h2, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { TLSSocket } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import { Metadata, type ServerInterceptingCallInterface, status as Status, type StatusObject } from '@grpc/grpc-js';
import { decodeTimeout } from '../../../engine/deadline.js';
import { type LongTimer, setLongTimeout } from '../../long-timer.js';
import { encodeGrpcMessage, statusOfError } from '../../status.js';
import { MessageFramingError, MessageReader } from '../../wire.js';

// A tunnel RPC accepted on a node:http2 server the user made, without a
// grpc-js Server under it: gRPC over HTTP/2 done here, one message per tunnel
// frame. It offers exactly what the handler uses of grpc-js's
// ServerDuplexStream, with grpc-js's wire output (headers, trailers, status
// texts) and its event order, so the handler cannot tell the two apart.

/** Request headers grpc-js keeps out of a call's metadata. */
const NOT_METADATA = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'];

/** grpc-js's response headers (it always names its encodings, though it never compresses). */
const RESPONSE_HEADERS = {
  [h2.HTTP2_HEADER_STATUS]: h2.HTTP_STATUS_OK,
  [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc+proto',
};
const ENCODING_HEADERS = { 'grpc-accept-encoding': 'identity,deflate,gzip', 'grpc-encoding': 'identity' };

/** grpc-js's default receive limit (4 MiB). */
export const DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH = 4 * 1024 * 1024;

/** Options of {@link RawAcceptedCall}. */
export interface RawAcceptedCallOptions<In, Out> {
  readonly stream: ServerHttp2Stream;
  readonly headers: IncomingHttpHeaders;
  readonly deserialize: (bytes: Buffer) => In;
  /** Encodes a value as one gRPC message, its 5-byte prefix included. */
  readonly frame: (value: Out) => Buffer;
  /** Largest request message accepted; -1 for no limit. Default 4 MiB, as grpc-js's. */
  readonly maxReceiveMessageLength?: number | undefined;
}

type MetricsRecorder = ReturnType<ServerInterceptingCallInterface['getMetricsRecorder']>;

/**
 * The per-call metrics recorder tunneled calls see. grpc-js reports what is
 * recorded only when its server is created with an option asking for it,
 * which a node:http2 server has not: so it records nothing. grpc-js's class
 * has a private field, so no object of ours has its type: hence the cast.
 */
const NO_METRICS = {
  recordRequestCostMetric(): void {},
  recordUtilizationMetric(): void {},
  recordNamedMetric(): void {},
  recordCPUUtilizationMetric(): void {},
  recordMemoryUtilizationMetric(): void {},
  recordApplicationUtilizationMetric(): void {},
  recordQpsMetric(): void {},
  recordEpsMetric(): void {},
  serialize: (): Buffer => Buffer.alloc(0),
} as unknown as MetricsRecorder;

/**
 * The server half of a tunnel RPC on the library's own HTTP/2 handling:
 * events `data` (a request message), `end` (the client half-closed),
 * `cancelled` (the RPC ended: reset by the client, deadline, or after its
 * status was sent, as grpc-js says it); emitting `error` with a status fails
 * the RPC, as on grpc-js's ServerDuplexStream.
 */
export class RawAcceptedCall<In, Out> extends EventEmitter {
  /** Request metadata, as grpc-js gives it to a handler. */
  readonly metadata: Metadata;
  /** Whether the RPC ended (grpc-js's flag of the same name). */
  cancelled = false;
  /** The largest request message accepted (what chunk-size.ts offers from). */
  readonly maxReceiveMessageSize: number;
  private readonly stream: ServerHttp2Stream;
  private readonly reader: MessageReader;
  private readonly host: string | undefined;
  private deadline = Number.POSITIVE_INFINITY;
  private deadlineTimer: LongTimer | undefined;
  private metadataSent = false;
  private statusSent = false;
  private cancelNotified = false;
  private pendingTrailers: Metadata | undefined;

  constructor(private readonly options: RawAcceptedCallOptions<In, Out>) {
    super();
    const { stream, headers } = options;
    this.stream = stream;
    this.maxReceiveMessageSize = options.maxReceiveMessageLength ?? DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH;
    const limit = this.maxReceiveMessageSize < 0 ? Number.POSITIVE_INFINITY : this.maxReceiveMessageSize;
    const encoding = headers['grpc-encoding'];
    this.reader = new MessageReader(limit, (body) =>
      decompressed(body, typeof encoding === 'string' ? encoding : 'identity', limit),
    );
    this.host = headers[':authority'] ?? headers.host;
    const metadata = Metadata.fromHttp2Headers(headers);
    const timeout = metadata.get('grpc-timeout')[0];
    for (const name of NOT_METADATA) metadata.remove(name);
    this.metadata = metadata;
    if (timeout !== undefined) this.startDeadline(String(timeout));
    // grpc-js's ServerDuplexStream: an 'error' emitted by the application is the status to end with.
    this.on('error', (error: unknown) => this.sendStatus(statusOfError(error)));
    // A reset stream may emit 'error'; its 'close' follows and says the RPC is over.
    stream.on('error', () => {});
    stream.once('close', () => this.notifyCancelled());
    stream.on('data', (data: Buffer) => this.onData(data));
    stream.on('end', () => {
      if (!this.cancelled) this.emit('end');
    });
  }

  /** The client's address, as grpc-js's server words it. */
  getPeer(): string {
    const socket = this.stream.session?.socket;
    if (!socket?.remoteAddress) return 'unknown';
    return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
  }

  /** The request's `:authority`. */
  getHost(): string {
    return this.host ?? '';
  }

  /** The deadline from grpc-timeout (ms since the epoch), Infinity without one. */
  getDeadline(): number {
    return this.deadline;
  }

  /** The client's verified certificate over TLS, as grpc-js's server reports it; {} otherwise. */
  getAuthContext(): Record<string, unknown> {
    const socket = this.stream.session?.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
    const certificate = socket.getPeerCertificate();
    return { transportSecurityType: 'ssl', sslPeerCertificate: certificate.raw ? certificate : undefined };
  }

  /** The metrics recorder tunneled calls see: records nothing. */
  getMetricsRecorder(): MetricsRecorder {
    return NO_METRICS;
  }

  /** The HTTP/2 session the RPC runs on (keepalive pings and windows), while it is open. */
  http2Session(): Http2Session | undefined {
    return this.stream.session;
  }

  /** Sends the response headers (once; later calls do nothing), as grpc-js does. */
  sendMetadata(metadata?: Metadata): void {
    if (this.checkCancelled() || this.metadataSent) return;
    this.metadataSent = true;
    this.stream.respond(
      { ...RESPONSE_HEADERS, ...ENCODING_HEADERS, ...metadata?.toHttp2Headers() },
      { waitForTrailers: true },
    );
  }

  /** Sends one response message; `callback` runs once HTTP/2 took it. Returns false to ask the writer to wait. */
  write(message: Out, callback?: () => void): boolean {
    if (this.checkCancelled() || this.statusSent) return false;
    this.sendMetadata();
    return this.stream.write(this.options.frame(message), (error) => {
      if (error) this.sendStatus({ code: Status.INTERNAL, details: 'Internal server error', metadata: null });
      else callback?.();
    });
  }

  /** Ends the RPC with OK (and `trailers`, if given), as grpc-js's `end`. */
  end(trailers?: Metadata): void {
    if (trailers) this.pendingTrailers = trailers;
    this.sendStatus({ code: Status.OK, details: 'OK', metadata: this.pendingTrailers ?? null });
  }

  private onData(data: Buffer): void {
    if (this.checkCancelled()) return;
    let messages: Buffer[];
    try {
      messages = this.reader.push(data);
    } catch (err) {
      if (err instanceof DecompressionError) {
        this.sendStatus({ code: err.code, details: err.message, metadata: null });
        return;
      }
      if (!(err instanceof MessageFramingError)) throw err;
      // grpc-js: over the limit is RESOURCE_EXHAUSTED; a compressed message
      // without an agreed encoding would not decompress: INTERNAL.
      const code = err.kind === 'too-large' ? Status.RESOURCE_EXHAUSTED : Status.INTERNAL;
      this.sendStatus({ code, details: err.message, metadata: null });
      return;
    }
    for (const bytes of messages) {
      let message: In;
      try {
        message = this.options.deserialize(bytes);
      } catch {
        this.sendStatus({ code: Status.INTERNAL, details: 'Error deserializing request', metadata: null });
        return;
      }
      this.emit('data', message);
      if (this.cancelled) return;
    }
  }

  private startDeadline(value: string): void {
    const timeout = decodeTimeout(value, 'grpc-js');
    if (timeout === undefined) {
      const details = `Invalid grpc-timeout value "${value}"`;
      // grpc-js answers after the handler had its start, on the next tick.
      process.nextTick(() => this.sendStatus({ code: Status.INTERNAL, details, metadata: null }));
      return;
    }
    this.deadline = Date.now() + timeout;
    this.deadlineTimer = setLongTimeout(() => {
      this.sendStatus({ code: Status.DEADLINE_EXCEEDED, details: 'Deadline exceeded', metadata: null });
    }, timeout);
  }

  /** Ends the RPC with `status`, once: trailers after headers, or a trailers-only response. */
  private sendStatus(status: StatusObject | (Omit<StatusObject, 'metadata'> & { metadata: Metadata | null })): void {
    if (this.checkCancelled() || this.statusSent) return;
    this.statusSent = true;
    const trailers = {
      'grpc-status': status.code,
      'grpc-message': encodeGrpcMessage(status.details),
      ...status.metadata?.toHttp2Headers(),
    };
    if (this.metadataSent) {
      this.stream.once('wantTrailers', () => {
        if (!this.stream.closed) this.stream.sendTrailers(trailers);
        this.notifyCancelled();
      });
      this.stream.end();
    } else {
      this.stream.respond({ ...RESPONSE_HEADERS, ...trailers }, { endStream: true });
      this.notifyCancelled();
    }
  }

  /** The stream closed before the RPC ended here (grpc-js's race check). */
  private checkCancelled(): boolean {
    if (!this.cancelled && (this.stream.destroyed || this.stream.closed)) this.notifyCancelled();
    return this.cancelled;
  }

  /** grpc-js tells the handler 'cancelled' once, on the next tick, whenever the RPC ends. */
  private notifyCancelled(): void {
    if (this.cancelNotified) return;
    this.cancelNotified = true;
    this.cancelled = true;
    this.deadlineTimer?.clear();
    process.nextTick(() => this.emit('cancelled', 'cancelled'));
    // Whatever still arrives is read and dropped, so the stream can close.
    this.stream.resume();
  }
}

/** Why a compressed request message could not be read: the status grpc-js's server answers with. */
class DecompressionError extends Error {
  constructor(
    readonly code: Status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A message the client sent with the compressed flag, as grpc-js's server
 * reads it: by the request's grpc-encoding (gzip or deflate; 'identity'
 * takes the bytes as they are), bounded by the receive limit. Synchronous,
 * so messages stay in order; a tunnel frame is at most the limit.
 */
function decompressed(body: Buffer, encoding: string, limit: number): Buffer {
  if (encoding === 'identity') return body;
  if (encoding !== 'gzip' && encoding !== 'deflate') {
    throw new DecompressionError(
      Status.UNIMPLEMENTED,
      `Received message compressed with unsupported encoding "${encoding}"`,
    );
  }
  try {
    const options = Number.isFinite(limit) ? { maxOutputLength: limit + 1 } : {};
    const out = encoding === 'gzip' ? gunzipSync(body, options) : inflateSync(body, options);
    if (out.length <= limit) return out;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_BUFFER_TOO_LARGE') {
      throw new DecompressionError(Status.INTERNAL, 'Failed to decompress message');
    }
  }
  throw new DecompressionError(
    Status.RESOURCE_EXHAUSTED,
    `Received message that decompresses to a size larger than ${limit}`,
  );
}

/**
 * Whether a request is gRPC (its content-type is application/grpc*);
 * answers one that is not with HTTP 415, as grpc-js's server does.
 */
export function acceptsAsGrpc(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  if (typeof type === 'string' && type.startsWith('application/grpc')) return true;
  stream.on('error', () => {});
  stream.respond({ [h2.HTTP2_HEADER_STATUS]: h2.HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE }, { endStream: true });
  return false;
}

/** Answers a gRPC request for a method this server lacks: UNIMPLEMENTED, worded as grpc-js's server words it. */
export function answerUnimplemented(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.on('error', () => {});
  stream.respond(
    {
      ...RESPONSE_HEADERS,
      'grpc-status': Status.UNIMPLEMENTED,
      'grpc-message': encodeGrpcMessage(`The server does not implement the method ${headers[':path']}`),
    },
    { endStream: true },
  );
}
