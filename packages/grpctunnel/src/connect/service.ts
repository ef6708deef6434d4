import {
  type BinaryReadOptions,
  type BinaryWriteOptions,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  createContextValues,
  createHandlerContext,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
} from '@connectrpc/connect';
import { createAsyncIterable, transformInvokeImplementation } from '@connectrpc/connect/protocol';
import {
  experimental,
  logVerbosity,
  type MethodDefinition,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { getTunnelInfo } from '../grpc/context.js';
import { tunnelInfoKey } from './context.js';
import { type ErrorStatus, statusFromConnectError } from './errors.js';
import { headersToMetadata, metadataToHeaders } from './headers.js';

/** Options of {@link connectServiceDefinition} and {@link addConnectService}. */
export interface ConnectServiceOptions {
  /**
   * Told about an error a handler threw that is not a `ConnectError`: the
   * caller gets INTERNAL "internal error" (as from Connect's own gRPC
   * handler), never the error's text. Default: logged through grpc-js's
   * logger at ERROR.
   */
  onInternalError?: (error: unknown, context: HandlerContext) => void;
  /** Connect interceptors run around every call on the server side, as a `ConnectRouter`'s `interceptors`. */
  interceptors?: Interceptor[];
  /** protobuf-es options for decoding requests. */
  readOptions?: Partial<BinaryReadOptions>;
  /** protobuf-es options for encoding responses. */
  writeOptions?: Partial<BinaryWriteOptions>;
}

/** A grpc-js service definition and implementation, ready for any `addService`. */
export interface ConnectServiceDefinition {
  /** The methods, keyed by their local names, with protobuf-es (de)serializers. */
  definition: ServiceDefinition;
  /** A grpc-js handler per method, running the Connect implementation. */
  implementation: UntypedServiceImplementation;
}

/** Anything that serves grpc-js services: `TunnelServiceHandler`, `ReverseTunnelServer`, a grpc-js `Server`. */
export interface ServiceAdder {
  /** grpc-js's `Server.addService` signature. */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void;
}

type AnyMessage = MessageShape<DescMessage>;
type ServerCall = ServerUnaryCall<AnyMessage, AnyMessage> | ServerReadableStream<AnyMessage, AnyMessage>;
type AnyCall = ServerCall | ServerWritableStream<AnyMessage, AnyMessage> | ServerDuplexStream<AnyMessage, AnyMessage>;
type Controller = ReturnType<typeof createHandlerContext>;

/**
 * Turns a Connect-ES service implementation (a `ServiceImpl`, possibly
 * partial: missing methods answer UNIMPLEMENTED) into a grpc-js service
 * definition and implementation, so that anything serving grpc-js services
 * serves it: a `TunnelServiceHandler` (forward tunnels), a
 * `ReverseTunnelServer` (reverse tunnels), or a plain grpc-js `Server`.
 *
 * Handlers get Connect's handler context: `signal` (aborts when the caller
 * cancels or the deadline passes), `timeoutMs()`, `requestHeader`,
 * `responseHeader`, `responseTrailer`, and the tunnel as
 * {@link getTunnelInfoFromContext}. A thrown `ConnectError` becomes its
 * status, metadata and details on the wire; any other error becomes
 * INTERNAL "internal error" and goes to `options.onInternalError`.
 */
export function connectServiceDefinition<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: ConnectServiceOptions = {},
): ConnectServiceDefinition {
  const spec = createServiceImplSpec(service, impl);
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  const implementation: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(spec.methods)) {
    definition[name] = methodDefinition(method.method, options);
    implementation[name] = methodHandler(method, options);
  }
  return { definition: definition as ServiceDefinition, implementation };
}

/**
 * Serves a Connect-ES service implementation on `host` (a
 * `TunnelServiceHandler`, a `ReverseTunnelServer` or a grpc-js `Server`),
 * beside its grpc-js services: see {@link connectServiceDefinition}.
 *
 * @example
 * ```ts
 * addConnectService(handler, ElizaService, { say: (req) => ({ sentence: req.sentence }) });
 * ```
 */
export function addConnectService<S extends DescService>(
  host: ServiceAdder,
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: ConnectServiceOptions = {},
): void {
  const { definition, implementation } = connectServiceDefinition(service, impl, options);
  host.addService(definition, implementation);
}

function methodDefinition(method: DescMethod, options: ConnectServiceOptions): MethodDefinition<unknown, unknown> {
  const encode = (desc: DescMessage) => (message: unknown) => {
    const bytes = toBinary(desc, message as AnyMessage, options.writeOptions);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const decode = (desc: DescMessage) => (bytes: Buffer) => fromBinary(desc, bytes, options.readOptions);
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
    responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
    requestSerialize: encode(method.input),
    requestDeserialize: decode(method.input),
    responseSerialize: encode(method.output),
    responseDeserialize: decode(method.output),
    originalName: method.localName,
  };
}

/**
 * What a call of one method needs besides its call object: the Connect
 * context, and sending the response headers once, just before the first
 * response or the status (so handlers may set them until then, as with
 * Connect's own handlers).
 */
class CallState {
  readonly context: Controller;
  private headerSent = false;

  constructor(
    private readonly spec: MethodImplSpec,
    private readonly call: AnyCall,
    private readonly options: ConnectServiceOptions,
  ) {
    const deadline = call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    const cancelled = new AbortController();
    // grpc-js ends a call at its deadline with the same 'cancelled' event as
    // a cancel by the caller, and usually before the context's own deadline
    // timer (started later) fires: tell the two apart by the clock, so that
    // handlers see DeadlineExceeded as under Connect's own server.
    const onCancel = () =>
      cancelled.abort(
        Date.now() + DEADLINE_SLACK_MS >= at
          ? new ConnectError('the operation timed out', Code.DeadlineExceeded)
          : new ConnectError('the call was cancelled', Code.Canceled),
      );
    if (call.cancelled) onCancel();
    else (call as NodeJS.EventEmitter).once('cancelled', onCancel);
    const values = createContextValues();
    values.set(tunnelInfoKey, getTunnelInfo(call));
    this.context = createHandlerContext({
      service: spec.method.parent,
      method: spec.method,
      protocolName: 'grpc',
      requestMethod: 'POST',
      url: call.getPath(),
      ...(Number.isFinite(at) && { timeoutMs: Math.max(0, at - Date.now()) }),
      requestSignal: cancelled.signal,
      requestHeader: metadataToHeaders(call.metadata),
      contextValues: values,
    });
  }

  /** Whether the call is over for the caller (cancelled or past its deadline): nothing more goes out. */
  get gone(): boolean {
    return this.call.cancelled;
  }

  sendHeader(): void {
    if (this.headerSent || this.gone) return;
    this.headerSent = true;
    this.call.sendMetadata(headersToMetadata(this.context.responseHeader));
  }

  trailers() {
    return headersToMetadata(this.context.responseTrailer);
  }

  /** The status a handler's error stands for; errors that are not ConnectErrors are reported, not sent. */
  errorStatus(error: unknown): ErrorStatus {
    if (error instanceof ConnectError) return statusFromConnectError(error, this.context.responseTrailer);
    try {
      if (this.options.onInternalError) this.options.onInternalError(error, this.context);
      else {
        const where = `${this.spec.method.parent.typeName}/${this.spec.method.name}`;
        const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
        experimental.log(logVerbosity.ERROR, `grpctunnel: the Connect handler of ${where} threw: ${text}`);
      }
    } catch {
      // A failing reporter must not keep the caller from its status.
    }
    return statusFromConnectError(new ConnectError('internal error', Code.Internal), this.context.responseTrailer);
  }
}

// How close to its deadline a cancelled call counts as timed out: a caller
// resets the call at its own deadline, which it measured from a little
// earlier than this server did (the request's travel time), and Node's
// timers may fire a millisecond early.
const DEADLINE_SLACK_MS = 20;

function methodHandler(spec: MethodImplSpec, options: ConnectServiceOptions): UntypedHandleCall {
  // Connect's own invocation: it normalizes outputs, checks that unary kinds
  // get exactly one request, and runs the server interceptors.
  const invoke = (state: CallState, input: AsyncIterable<AnyMessage>) =>
    transformInvokeImplementation(spec, state.context, options.interceptors ?? [])(input);
  const respondOnce = (
    call: ServerCall,
    callback: sendUnaryData<AnyMessage>,
    input: (signal: AbortSignal) => AsyncIterable<AnyMessage>,
  ) => {
    const state = new CallState(spec, call, options);
    const run = async () => {
      try {
        let reply: AnyMessage | undefined;
        // Unary kinds yield exactly one response.
        for await (const message of invoke(state, input(state.context.signal))) reply = message;
        state.sendHeader();
        callback(null, reply, state.trailers());
        state.context.abort();
      } catch (err) {
        state.context.abort(err);
        // A call the caller already left gets no status, and its handler's
        // errors (often the abort itself) are not the implementation's fault.
        if (state.gone) return;
        state.sendHeader();
        callback(state.errorStatus(err));
      }
    };
    void run();
  };
  const respondStream = (
    call: ServerWritableStream<AnyMessage, AnyMessage> | ServerDuplexStream<AnyMessage, AnyMessage>,
    input: (signal: AbortSignal) => AsyncIterable<AnyMessage>,
  ) => {
    const state = new CallState(spec, call, options);
    const run = async () => {
      try {
        for await (const message of invoke(state, input(state.context.signal))) {
          if (state.gone) break;
          state.sendHeader();
          if (!call.write(message)) await drained(call, state.context.signal);
        }
        state.context.abort();
        if (state.gone) return;
        state.sendHeader();
        call.end(state.trailers());
      } catch (err) {
        state.context.abort(err);
        if (state.gone) return;
        state.sendHeader();
        call.emit('error', state.errorStatus(err));
      }
    };
    void run();
  };
  const single = (call: { request: AnyMessage }) => () => createAsyncIterable([call.request]);
  switch (spec.kind) {
    case 'unary':
      return (call: ServerUnaryCall<AnyMessage, AnyMessage>, callback: sendUnaryData<AnyMessage>) =>
        respondOnce(call, callback, single(call));
    case 'client_streaming':
      return (call: ServerReadableStream<AnyMessage, AnyMessage>, callback: sendUnaryData<AnyMessage>) =>
        respondOnce(call, callback, (signal) => requests(call, signal));
    case 'server_streaming':
      return (call: ServerWritableStream<AnyMessage, AnyMessage>) => respondStream(call, single(call));
    case 'bidi_streaming':
      return (call: ServerDuplexStream<AnyMessage, AnyMessage>) =>
        respondStream(call, (signal) => requests(call, signal));
  }
}

/** Resolves when a response stream can take more, or when the call is over. */
function drained(call: Pick<NodeJS.EventEmitter, 'once' | 'off'>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * The request stream as the async iterable Connect handlers take. Each read
 * races the call's end: after a cancel or the deadline it throws the
 * context's reason (Canceled or DeadlineExceeded) instead of waiting for a
 * message that will not come. Stopping early does not destroy the call
 * object, whose other half may still be sending.
 */
async function* requests(
  call: ServerReadableStream<AnyMessage, AnyMessage> | ServerDuplexStream<AnyMessage, AnyMessage>,
  signal: AbortSignal,
): AsyncGenerator<AnyMessage> {
  const reads = call.iterator({ destroyOnReturn: false }) as AsyncIterator<AnyMessage>;
  let onAbort: (() => void) | undefined;
  const ended = new Promise<never>((_, reject) => {
    onAbort = () => reject(ConnectError.from(signal.reason, Code.Canceled));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  ended.catch(() => {});
  try {
    for (;;) {
      const next = await Promise.race([reads.next(), ended]);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}
