import {
  type BinaryReadOptions,
  type BinaryWriteOptions,
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import { Code, ConnectError, createContextValues, type Interceptor, type Transport } from '@connectrpc/connect';
import { createMethodUrl, runStreamingCall, runUnaryCall } from '@connectrpc/connect/protocol';
import {
  type CallOptions,
  type ChannelInterface,
  Client,
  type ClientDuplexStream,
  credentials,
  Metadata,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import type { TunnelChannel } from '../grpc/client/tunnel-channel.js';
import type { TunnelPool } from '../pool/tunnel-pool.js';
import { connectErrorFromStatus, trailerHeaders } from './errors.js';
import { headersToMetadata, metadataToHeaders } from './headers.js';

/** Options of {@link createTunnelTransport}. */
export interface TunnelTransportOptions {
  /** Connect interceptors, run around every call as with Connect's own transports. */
  interceptors?: Interceptor[];
  /** Timeout of calls that set none, in milliseconds. Default none. */
  defaultTimeoutMs?: number;
  /**
   * The URL Connect interceptors see calls go to, before the method's path
   * (`<baseUrl>/<package>.<Service>/<Method>`). Only informative: the call
   * goes through the tunnel whatever it says. Default `grpctunnel://tunnel`.
   */
  baseUrl?: string;
  /** protobuf-es options for decoding responses. */
  readOptions?: Partial<BinaryReadOptions>;
  /** protobuf-es options for encoding requests. */
  writeOptions?: Partial<BinaryWriteOptions>;
  /**
   * With a pool: calls started while no tunnel is ready wait for one (until
   * their timeout or abort) instead of failing UNAVAILABLE at once, as
   * grpc-js's `waitForReady` call option. Default false.
   */
  waitForReady?: boolean;
}

// How many responses a stream buffers before it stops reading from the
// tunnel: beyond this the tunnel's flow control holds the sender back.
const READ_AHEAD = 16;

type AnyMessage = MessageShape<DescMessage>;

/**
 * A Connect-ES `Transport` whose calls go through a forward tunnel
 * (a `TunnelChannel`, from `openTunnel`) or a pool of reverse tunnels
 * (a `TunnelPool`, from `TunnelServiceHandler.asChannel()` or
 * `keyAsChannel()`): `createClient(Service, createTunnelTransport(tunnel))`.
 *
 * Calls use the gRPC protocol with binary protobuf, through grpc-js's own
 * client machinery over the tunnel, so they behave as calls of a grpc-js
 * client on that tunnel: statuses become `ConnectError`s with the same code
 * and message (and the details of `grpc-status-details-bin`, for
 * `findDetails`), timeouts travel as gRPC deadlines, and an aborted signal
 * cancels the call. The transport does not own the tunnel: closing the
 * tunnel (or the handler) ends its calls.
 */
export function createTunnelTransport(
  tunnel: TunnelChannel | TunnelPool,
  options: TunnelTransportOptions = {},
): Transport {
  // A grpc-js client over the tunnel: its calls run grpc-js's call lifecycle
  // (deadlines, cancellation, status delivery) on the tunnel's calls. It is
  // never closed, as closing it would close a tunnel the caller owns.
  const client = new Client(tunnel.getTarget(), credentials.createInsecure(), {
    channelOverride: tunnel as ChannelInterface,
  });
  const baseUrl = options.baseUrl ?? 'grpctunnel://tunnel';
  const timeoutOf = (timeoutMs: number | undefined) => {
    const ms = timeoutMs ?? options.defaultTimeoutMs;
    return ms === undefined || ms <= 0 ? undefined : ms;
  };
  const codec = (method: DescMethod) => ({
    serialize: (message: AnyMessage) => {
      const bytes = toBinary(method.input, message, options.writeOptions);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    deserialize: (bytes: Buffer) => fromBinary(method.output, bytes, options.readOptions),
  });
  const callOptions = (timeoutMs: number | undefined): CallOptions =>
    timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  // What runUnaryCall and runStreamingCall both take besides the request.
  const around = (signal: AbortSignal | undefined, timeout: number | undefined) => ({
    ...(options.interceptors && { interceptors: options.interceptors }),
    ...(signal && { signal }),
    ...(timeout !== undefined && { timeoutMs: timeout }),
  });
  // The request fields both call kinds share.
  const requestOf = <M extends DescMethod>(
    method: M,
    header: ConstructorParameters<typeof Headers>[0],
    contextValues: ReturnType<typeof createContextValues> | undefined,
  ) => ({
    service: method.parent,
    method,
    requestMethod: 'POST' as const,
    url: createMethodUrl(baseUrl, method),
    header: new Headers(header),
    contextValues: contextValues ?? createContextValues(),
  });
  const metadataOf = (header: Headers) =>
    headersToMetadata(header, new Metadata(options.waitForReady ? { waitForReady: true } : {}));

  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const timeout = timeoutOf(timeoutMs);
      const callOpts = callOptions(timeout);
      const { serialize, deserialize } = codec(method);
      return await runUnaryCall({
        ...around(signal, timeout),
        req: { stream: false, ...requestOf(method, header, contextValues), message: input },
        next: (req) =>
          new Promise((resolve, reject) => {
            // An already aborted signal fires no 'abort' event: do not start the call at all.
            if (req.signal.aborted) {
              reject(ConnectError.from(req.signal.reason, Code.Canceled));
              return;
            }
            const responseHeader = new Headers();
            let outcome: { error: ServiceError | null; message: AnyMessage | undefined } | undefined;
            const call = client.makeUnaryRequest(
              `/${method.parent.typeName}/${method.name}`,
              serialize,
              deserialize,
              req.message as AnyMessage,
              metadataOf(req.header),
              callOpts,
              (error, message) => {
                outcome = { error, message };
              },
            );
            const onAbort = () => call.cancel();
            req.signal.addEventListener('abort', onAbort, { once: true });
            call.on('metadata', (metadata: Metadata) => metadataToHeaders(metadata, responseHeader));
            // grpc-js runs the callback, then emits 'status' with the trailers.
            call.on('status', (status: StatusObject) => {
              req.signal.removeEventListener('abort', onAbort);
              if (outcome?.error || outcome?.message === undefined) {
                reject(connectErrorFromStatus(outcome?.error ?? status, responseHeader));
                return;
              }
              resolve({
                stream: false,
                service: method.parent,
                method: req.method,
                header: responseHeader,
                message: outcome.message as never,
                trailer: trailerHeaders(status),
              });
            });
          }),
      });
    },

    async stream(method, signal, timeoutMs, header, input, contextValues) {
      const timeout = timeoutOf(timeoutMs);
      const callOpts = callOptions(timeout);
      const { serialize, deserialize } = codec(method);
      return await runStreamingCall({
        ...around(signal, timeout),
        req: { stream: true, ...requestOf(method, header, contextValues), message: input },
        next: async (req) => {
          // An already aborted signal fires no 'abort' event: do not start the call at all.
          if (req.signal.aborted) throw ConnectError.from(req.signal.reason, Code.Canceled);
          // All three streaming kinds are the same on the wire; Connect's
          // client checks the number of messages each kind allows.
          const call = client.makeBidiStreamRequest(
            `/${method.parent.typeName}/${method.name}`,
            serialize,
            deserialize,
            metadataOf(req.header),
            callOpts,
          );
          const responses = new ResponseStream(call, req.signal);
          responses.pump(req.message as AsyncIterable<AnyMessage>);
          await responses.headers;
          return {
            ...req,
            header: responses.header,
            trailer: responses.trailer,
            message: responses.messages() as never,
          };
        },
      });
    },
  };
}

/**
 * One streaming call's two directions: request messages pumped from an
 * async iterable into the grpc-js call (one at a time, as the tunnel takes
 * them), responses queued from the call for an async iterator (reading
 * paused while the queue is long), and the status at the end.
 */
class ResponseStream {
  readonly header = new Headers();
  readonly trailer = new Headers();
  /** Settles when response headers arrive, or rejects if the call fails first. */
  readonly headers: Promise<void>;
  private readonly queue: AnyMessage[] = [];
  private status: StatusObject | undefined;
  private error: ConnectError | undefined;
  private wake: (() => void) | undefined;
  private readonly ended: Promise<void>;

  constructor(
    private readonly call: ClientDuplexStream<AnyMessage, AnyMessage>,
    signal: AbortSignal,
  ) {
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    let gotHeaders!: () => void;
    let failedEarly!: (error: ConnectError) => void;
    this.headers = new Promise((resolve, reject) => {
      gotHeaders = resolve;
      failedEarly = reject;
    });
    this.ended = new Promise((resolve) => {
      call.on('status', (status: StatusObject) => {
        signal.removeEventListener('abort', onAbort);
        this.status = status;
        trailerHeaders(status, this.trailer);
        if (status.code !== 0) {
          this.error ??= connectErrorFromStatus(status, this.header);
          // A call that fails before any header (trailers only) fails at once, as with Connect's transport.
          failedEarly(this.error);
        }
        gotHeaders();
        resolve();
        this.notify();
      });
    });
    call.on('metadata', (metadata: Metadata) => {
      metadataToHeaders(metadata, this.header);
      gotHeaders();
    });
    call.on('data', (message: AnyMessage) => {
      this.queue.push(message);
      if (this.queue.length >= READ_AHEAD) call.pause();
      this.notify();
    });
    // grpc-js also reports a failed status as an 'error' event; 'status' covers it.
    call.on('error', () => {});
  }

  /** Writes the request messages, then half-closes; a failing request iterable cancels the call. */
  pump(requests: AsyncIterable<AnyMessage>): void {
    const run = async () => {
      for await (const message of requests) {
        if (this.status) return;
        await Promise.race([new Promise<void>((resolve) => this.call.write(message, () => resolve())), this.ended]);
      }
      if (!this.status) this.call.end();
    };
    run().catch((err: unknown) => {
      if (this.status) return;
      // As Connect's own transports: a request stream that fails ends the call with its error, as INTERNAL.
      this.error ??= ConnectError.from(err, Code.Internal);
      this.call.cancel();
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The responses, then the call's error if it failed. Stopping early cancels the call. */
  async *messages(): AsyncGenerator<AnyMessage> {
    try {
      for (;;) {
        const message = this.queue.shift();
        if (message !== undefined) {
          if (this.queue.length < READ_AHEAD / 2) this.call.resume();
          yield message;
          continue;
        }
        if (this.status) break;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
      if (this.error) throw this.error;
    } finally {
      if (!this.status) this.call.cancel();
    }
  }
}
