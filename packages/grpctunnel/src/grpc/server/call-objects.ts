import { EventEmitter } from 'node:events';
import { Duplex, Readable, Writable } from 'node:stream';
import { Metadata, type ServerInterceptingCallInterface, status as Status } from '@grpc/grpc-js';
import { type OutgoingStatus, statusOfError } from '../status.js';

// The call objects tunneled handlers receive. They mirror grpc-js's own
// (ServerUnaryCall, ServerReadableStream, ServerWritableStream,
// ServerDuplexStream) method for method, on top of a
// ServerInterceptingCallInterface, so handlers cannot tell the difference.

type Inner = ServerInterceptingCallInterface;

/** The methods every grpc-js server call object has (ServerSurfaceCall). */
interface SurfaceMethods {
  getPeer(): string;
  sendMetadata(metadata: Metadata): void;
  getDeadline(): ReturnType<Inner['getDeadline']>;
  getPath(): string;
  getHost(): string;
  getAuthContext(): ReturnType<Inner['getAuthContext']>;
  getMetricsRecorder(): ReturnType<Inner['getMetricsRecorder']>;
}

function attachSurface(target: object, path: string, call: Inner): void {
  const methods: SurfaceMethods = {
    getPeer: () => call.getPeer(),
    sendMetadata: (metadata) => call.sendMetadata(metadata),
    getDeadline: () => call.getDeadline(),
    getPath: () => path,
    getHost: () => call.getHost(),
    getAuthContext: () => call.getAuthContext(),
    getMetricsRecorder: () => call.getMetricsRecorder(),
  };
  Object.assign(target, methods);
}

/** A unary or client-streaming handler's reply path, shared by both kinds. */
export interface UnaryCallObject extends SurfaceMethods {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: attachSurface() adds these methods in the constructor
export class UnaryCallObject extends EventEmitter {
  cancelled = false;

  constructor(
    path: string,
    call: Inner,
    public metadata: Metadata,
    public request: unknown,
  ) {
    super();
    attachSurface(this, path, call);
  }
}

/** The request stream of a client-streaming handler. */
export interface ReadableCallObject extends SurfaceMethods {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: attachSurface() adds these methods in the constructor
export class ReadableCallObject extends Readable {
  cancelled = false;

  constructor(
    path: string,
    private readonly call: Inner,
    public metadata: Metadata,
  ) {
    super({ objectMode: true });
    attachSurface(this, path, call);
  }

  override _read(): void {
    this.call.startRead();
  }
}

/**
 * Ends a writable call: the status set by an 'error' event, or OK with the
 * trailers given to end().
 */
class Ending {
  trailers: Metadata = new Metadata();
  pending: OutgoingStatus | undefined;
  constructor(private readonly call: Inner) {}
  onError(error: unknown): void {
    this.pending = statusOfError(error);
  }
  finish(): void {
    const status = this.pending ?? { code: Status.OK, details: 'OK' };
    this.call.sendStatus({ ...status, metadata: status.metadata ?? this.trailers });
  }
}

/** The response stream of a server-streaming handler. */
export interface WritableCallObject extends SurfaceMethods {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: attachSurface() adds these methods in the constructor
export class WritableCallObject extends Writable {
  cancelled = false;
  private readonly ending: Ending;

  constructor(
    path: string,
    private readonly call: Inner,
    public metadata: Metadata,
    public request: unknown,
  ) {
    super({ objectMode: true });
    attachSurface(this, path, call);
    this.ending = new Ending(call);
    this.on('error', (err) => {
      this.ending.onError(err);
      this.end();
    });
  }

  override _write(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.call.sendMessage(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    callback(null);
    this.ending.finish();
  }

  override end(...args: unknown[]): this {
    if (args[0] instanceof Metadata) this.ending.trailers = args[0];
    return super.end();
  }
}

/** Both streams of a bidi-streaming handler. */
export interface DuplexCallObject extends SurfaceMethods {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: attachSurface() adds these methods in the constructor
export class DuplexCallObject extends Duplex {
  cancelled = false;
  private readonly ending: Ending;

  constructor(
    path: string,
    private readonly call: Inner,
    public metadata: Metadata,
  ) {
    super({ objectMode: true });
    attachSurface(this, path, call);
    this.ending = new Ending(call);
    this.on('error', (err) => {
      this.ending.onError(err);
      this.end();
    });
  }

  override _read(): void {
    this.call.startRead();
  }

  override _write(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.call.sendMessage(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    callback(null);
    this.ending.finish();
  }

  override end(...args: unknown[]): this {
    if (args[0] instanceof Metadata) this.ending.trailers = args[0];
    return super.end();
  }
}
