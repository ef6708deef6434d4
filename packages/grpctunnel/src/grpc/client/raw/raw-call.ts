import { EventEmitter } from 'node:events';
import { type ClientHttp2Session, type ClientHttp2Stream, constants as h2, type IncomingHttpHeaders } from 'node:http2';
import { Metadata, type ServiceError, status as Status, type StatusObject } from '@grpc/grpc-js';
import { type LongTimer, setLongTimeout } from '../../long-timer.js';
import { decodeGrpcMessage } from '../../status.js';
import { grpcTimeout, MessageFramingError, MessageReader } from '../../wire.js';
import type { DialedCall } from '../dialed-call.js';
import { TUNNEL_RPC_USER_AGENT } from '../user-agent.js';
import { statusOfClosedStream, statusOfHttpCode } from './closed-status.js';
import { authContextOf, coreOf, peerOf, type TunnelConnection } from './connection.js';

/** Options of {@link RawTunnelCall}. */
export interface RawTunnelCallOptions<Out, In> {
  readonly connection: TunnelConnection;
  /** OPEN_TUNNEL_PATH or OPEN_REVERSE_TUNNEL_PATH. */
  readonly path: string;
  /** Encodes a value as one gRPC message, its 5-byte prefix included. */
  readonly frame: (value: Out) => Buffer;
  readonly deserialize: (bytes: Buffer) => In;
  /** Request metadata, sent as is (the library's negotiation headers already in it). */
  readonly metadata: Metadata;
  /** Deadline, ms since the epoch or a Date; none when undefined. */
  readonly deadline?: Date | number | undefined;
}

/**
 * The tunnel RPC on a {@link TunnelConnection}'s own HTTP/2 session: gRPC
 * over HTTP/2 done here, one message per tunnel frame, with grpc-js's
 * statuses and event order (see {@link DialedCall}), so the code above
 * cannot tell it from a grpc-js call.
 */
export class RawTunnelCall<Out, In> extends EventEmitter implements DialedCall<Out, In> {
  private readonly session: ClientHttp2Session | undefined;
  private readonly stream: ClientHttp2Stream | undefined;
  private readonly reader: MessageReader;
  private finalStatus: StatusObject | undefined;
  private statusOutput = false;
  private readsClosed = false;
  private serverEnded = false;
  private httpStatus: number | undefined;
  private internalError: (Error & { code?: string }) | undefined;
  private connectionDropped = false;
  private deadlineTimer: LongTimer | undefined;
  private readonly started = Date.now();
  private peer = 'unknown';

  constructor(private readonly options: RawTunnelCallOptions<Out, In>) {
    super();
    const connection = coreOf(options.connection);
    const limit = connection.maxReceiveMessageLength;
    this.reader = new MessageReader(limit < 0 ? Number.POSITIVE_INFINITY : limit);
    let session: ClientHttp2Session;
    let stream: ClientHttp2Stream;
    try {
      session = connection.session();
      stream = session.request(this.requestHeaders(), { endStream: false });
    } catch (err) {
      // A closed connection, or a session that ended between the check and the request.
      this.endCall({ code: Status.UNAVAILABLE, details: (err as Error).message, metadata: new Metadata() });
      return;
    }
    this.session = session;
    this.stream = stream;
    const release = connection.hold(session, (error) => {
      this.internalError ??= error;
      this.connectionDropped = true;
    });
    stream.once('close', release);
    this.listen(session, stream);
    const deadline = options.deadline instanceof Date ? options.deadline.getTime() : options.deadline;
    if (deadline !== undefined && deadline !== Number.POSITIVE_INFINITY) {
      this.deadlineTimer = setLongTimeout(() => this.deadlineExceeded(), Math.max(deadline - Date.now(), 0));
    }
  }

  private requestHeaders(): Record<string, string | string[]> {
    const { path, metadata, deadline } = this.options;
    const connection = coreOf(this.options.connection);
    const headers = metadata.toHttp2Headers() as Record<string, string | string[]>;
    headers[h2.HTTP2_HEADER_METHOD] = 'POST';
    headers[h2.HTTP2_HEADER_SCHEME] = connection.scheme;
    headers[h2.HTTP2_HEADER_PATH] = path;
    headers[h2.HTTP2_HEADER_AUTHORITY] = connection.authority;
    headers[h2.HTTP2_HEADER_CONTENT_TYPE] = 'application/grpc';
    headers[h2.HTTP2_HEADER_TE] = 'trailers';
    headers[h2.HTTP2_HEADER_USER_AGENT] = TUNNEL_RPC_USER_AGENT;
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    const timeout = at === undefined ? undefined : grpcTimeout(at);
    if (timeout !== undefined) headers['grpc-timeout'] = timeout;
    return headers;
  }

  private listen(session: ClientHttp2Session, stream: ClientHttp2Stream): void {
    stream.on('response', (headers: IncomingHttpHeaders, flags: number) => {
      this.httpStatus = Number(headers[h2.HTTP2_HEADER_STATUS]);
      // Connected for sure: note the peer while the socket can still say it.
      this.getPeer();
      if (flags & h2.NGHTTP2_FLAG_END_STREAM) {
        this.handleTrailers(headers);
        return;
      }
      let metadata: Metadata;
      try {
        metadata = Metadata.fromHttp2Headers(headers);
      } catch (err) {
        this.endCall({ code: Status.UNKNOWN, details: (err as Error).message, metadata: new Metadata() });
        return;
      }
      this.emit('metadata', metadata);
    });
    stream.on('trailers', (headers: IncomingHttpHeaders) => this.handleTrailers(headers));
    stream.on('data', (data: Buffer) => this.onData(data));
    stream.on('end', () => {
      this.readsClosed = true;
      this.maybeOutputStatus();
    });
    stream.on('error', (err: Error & { code?: string }) => {
      // Errors made from an RST_STREAM are reported by 'close' with the code.
      if (err.code !== 'ERR_HTTP2_STREAM_ERROR') this.internalError ??= err;
    });
    stream.on('close', () => {
      this.serverEnded = true;
      // After any 'error' emitted alongside, as grpc-js does, so its text can be used.
      process.nextTick(() => {
        if (this.finalStatus?.code === Status.OK) {
          // Closed without an 'end' (nothing more to read): the status is due now.
          this.readsClosed = true;
          this.maybeOutputStatus();
          return;
        }
        const rstCode = stream.rstCode ?? h2.NGHTTP2_NO_ERROR;
        if (rstCode === h2.NGHTTP2_NO_ERROR && this.finalStatus) return;
        const connectionDropped = this.connectionDropped || session.destroyed;
        if (connectionDropped) this.internalError ??= coreOf(this.options.connection).sessionError(session);
        const closed = statusOfClosedStream({
          rstCode,
          httpStatus: this.httpStatus,
          connectionDropped,
          internalError: this.internalError,
        });
        // A connection that never came up is UNAVAILABLE with its cause, as grpc-js says for a failed connect.
        const status =
          this.httpStatus === undefined && this.internalError && connectionDropped
            ? {
                code: Status.UNAVAILABLE,
                details: `No connection established. Last error: ${this.internalError.message}`,
              }
            : closed;
        this.endCall({ ...status, metadata: new Metadata() });
      });
    });
  }

  private onData(data: Buffer): void {
    if (this.statusOutput || this.finalStatus) return;
    let messages: Buffer[];
    try {
      messages = this.reader.push(data);
    } catch (err) {
      if (this.httpStatus !== undefined && this.httpStatus !== 200) {
        const mapped = statusOfHttpCode(this.httpStatus);
        this.endCall({ ...mapped, metadata: new Metadata() });
      } else {
        const code =
          err instanceof MessageFramingError && err.kind === 'compressed' ? Status.INTERNAL : Status.RESOURCE_EXHAUSTED;
        this.endCall({ code, details: (err as Error).message, metadata: new Metadata() });
      }
      return;
    }
    for (const message of messages) {
      let frame: In;
      try {
        frame = this.options.deserialize(message);
      } catch (err) {
        this.endCall({
          code: Status.INTERNAL,
          details: `Response message parsing error: ${(err as Error).message}`,
          metadata: new Metadata(),
        });
        return;
      }
      this.emit('data', frame);
      if (this.finalStatus) return;
    }
  }

  private handleTrailers(headers: IncomingHttpHeaders): void {
    this.serverEnded = true;
    let metadata: Metadata;
    try {
      metadata = Metadata.fromHttp2Headers(headers);
    } catch {
      metadata = new Metadata();
    }
    const codes = metadata.get('grpc-status');
    let status: StatusObject;
    if (codes.length > 0 && typeof codes[0] === 'string') {
      metadata.remove('grpc-status');
      const messages = metadata.get('grpc-message');
      let details = '';
      if (messages.length > 0 && typeof messages[0] === 'string') {
        details = decodeGrpcMessage(messages[0]);
        metadata.remove('grpc-message');
      }
      status = { code: Number(codes[0]), details, metadata };
    } else if (this.httpStatus) {
      status = { ...statusOfHttpCode(this.httpStatus), metadata };
    } else {
      status = { code: Status.UNKNOWN, details: 'No status information received', metadata };
    }
    this.endCall(status);
  }

  private deadlineExceeded(): void {
    const took = ((Date.now() - this.started) / 1000).toFixed(3);
    const peer = this.getPeer();
    this.endCall({
      code: Status.DEADLINE_EXCEEDED,
      details: `Deadline exceeded after ${took}s,remote_addr=${peer}`,
      metadata: new Metadata(),
    });
  }

  private endCall(status: StatusObject): void {
    if (this.finalStatus === undefined || this.finalStatus.code === Status.OK) {
      this.finalStatus = status;
      this.maybeOutputStatus();
    }
    this.destroyStream();
  }

  private maybeOutputStatus(): void {
    const status = this.finalStatus;
    if (!status || this.statusOutput) return;
    // An error ends the call at once; an OK status comes after every frame before it.
    if (status.code === Status.OK && !this.readsClosed) return;
    this.statusOutput = true;
    this.deadlineTimer?.clear();
    this.stream?.resume();
    // Later, as grpc-js does, so no listener runs inside this class's own handlers.
    process.nextTick(() => {
      if (status.code !== Status.OK) this.emit('error', serviceError(status));
      this.emit('status', status);
      process.nextTick(() => this.emit('end'));
    });
  }

  private destroyStream(): void {
    const stream = this.stream;
    if (!stream || stream.destroyed) return;
    if (this.serverEnded) {
      if (!stream.writableEnded) stream.end();
      return;
    }
    stream.close(this.finalStatus?.code === Status.OK ? h2.NGHTTP2_NO_ERROR : h2.NGHTTP2_CANCEL);
  }

  write(frame: Out, callback?: () => void): boolean {
    const stream = this.stream;
    if (!stream || this.finalStatus || stream.writableEnded || stream.destroyed) {
      if (callback) process.nextTick(callback);
      return true;
    }
    let bytes: Buffer;
    try {
      bytes = this.options.frame(frame);
    } catch (err) {
      this.endCall({
        code: Status.INTERNAL,
        details: `Request message serialization failure: ${(err as Error).message}`,
        metadata: new Metadata(),
      });
      if (callback) process.nextTick(callback);
      return true;
    }
    try {
      return stream.write(bytes, (err) => {
        if (err) {
          process.nextTick(() => {
            const code =
              (err as { code?: string }).code === 'ERR_STREAM_WRITE_AFTER_END' ? Status.INTERNAL : Status.UNAVAILABLE;
            this.endCall({ code, details: `Write error: ${err.message}`, metadata: new Metadata() });
            callback?.();
          });
          return;
        }
        callback?.();
      });
    } catch (err) {
      this.endCall({
        code: Status.UNAVAILABLE,
        details: `Write failed with error ${(err as Error).message}`,
        metadata: new Metadata(),
      });
      if (callback) process.nextTick(callback);
      return true;
    }
  }

  end(): void {
    const stream = this.stream;
    if (!stream || stream.destroyed || stream.writableEnded) return;
    stream.end();
  }

  cancel(): void {
    this.endCall({ code: Status.CANCELLED, details: 'Cancelled on client', metadata: new Metadata() });
  }

  resume(): void {
    // Frames are always read as they come (the tunnel's own flow control bounds them).
  }

  getPeer(): string {
    if (this.peer === 'unknown' && this.session && !this.session.destroyed) this.peer = peerOf(this.session);
    return this.peer;
  }

  getAuthContext(): Record<string, unknown> {
    return this.session && !this.session.destroyed ? authContextOf(this.session) : {};
  }

  /** The HTTP/2 session the RPC runs on (keepalive pings it, the window raise tunes it). */
  http2Session(): ClientHttp2Session | undefined {
    return this.session;
  }
}

/** The error a failed call emits, as grpc-js's callErrorFromStatus builds it. */
function serviceError(status: StatusObject): ServiceError {
  const error = new Error(`${status.code} ${Status[status.code]}: ${status.details}`);
  return Object.assign(error, status) as ServiceError;
}
