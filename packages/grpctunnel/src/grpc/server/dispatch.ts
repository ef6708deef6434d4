import {
  experimental,
  logVerbosity,
  type Metadata,
  type ServerErrorResponse,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { statusOfError } from '../status.js';
import { DuplexCallObject, ReadableCallObject, UnaryCallObject, WritableCallObject } from './call-objects.js';
import type { RegisteredMethod } from './service-registry.js';

type Inner = ServerInterceptingCallInterface;
type Cancellable = { cancelled: boolean; emit(event: 'cancelled', reason: string): boolean; destroy?: () => void };
type AnyHandler = (...args: unknown[]) => void;

/** Wraps a tunneled call in the user's server interceptors, outermost first (as grpc-js does). */
export function intercept(interceptors: readonly ServerInterceptor[], method: RegisteredMethod, call: Inner): Inner {
  const definition = method.definition as ServerMethodDefinition<unknown, unknown>;
  return interceptors.reduce<Inner>((next, interceptor) => interceptor(definition, next), call);
}

/** Runs the method's handler on a (possibly intercepted) call, in grpc-js's way for its kind. */
export function dispatch(method: RegisteredMethod, call: Inner): void {
  switch (method.kind) {
    case 'unary':
      runSingleRequest(method, call, (metadata, request, onCancel) => {
        const object = new UnaryCallObject(method.path, call, metadata, request);
        onCancel(object);
        invoke(method, call, () => (method.handler as AnyHandler)(object, unaryResponder(call)));
      });
      return;
    case 'serverStream':
      runSingleRequest(method, call, (metadata, request, onCancel) => {
        const object = new WritableCallObject(method.path, call, metadata, request);
        onCancel(object);
        invoke(method, call, () => (method.handler as AnyHandler)(object));
      });
      return;
    case 'clientStream':
      runStreaming(call, (metadata) => {
        const object = new ReadableCallObject(method.path, call, metadata);
        invoke(method, call, () => (method.handler as AnyHandler)(object, unaryResponder(call)));
        return object;
      });
      return;
    case 'bidi':
      runStreaming(call, (metadata) => {
        const object = new DuplexCallObject(method.path, call, metadata);
        invoke(method, call, () => (method.handler as AnyHandler)(object));
        return object;
      });
      return;
  }
}

function unaryResponder(call: Inner) {
  return (
    error: ServerErrorResponse | Partial<StatusObject> | null,
    value?: unknown,
    trailer?: Metadata,
    _flags?: number,
  ): void => {
    if (error) {
      call.sendStatus(statusOfError(error, trailer));
      return;
    }
    call.sendMessage(value, () => call.sendStatus({ code: Status.OK, details: 'OK', metadata: trailer ?? null }));
  };
}

function invoke(method: RegisteredMethod, call: Inner, run: () => void): void {
  try {
    run();
  } catch (err) {
    experimental.log(logVerbosity.ERROR, `grpctunnel: the handler of ${method.path} threw: ${err}`);
    call.sendStatus({ code: Status.UNKNOWN, details: 'the method handler threw an error' });
  }
}

function markCancelled(object: Cancellable | undefined, destroy: boolean): void {
  if (!object || object.cancelled) return;
  object.cancelled = true;
  object.emit('cancelled', 'cancelled');
  if (destroy) object.destroy?.();
}

// Unary and server-streaming: read the one request, then run the handler at half-close.
function runSingleRequest(
  method: RegisteredMethod,
  call: Inner,
  start: (metadata: Metadata, request: unknown, onCancel: (object: Cancellable) => void) => void,
): void {
  let metadata: Metadata;
  let request: unknown;
  let received = false;
  let object: Cancellable | undefined;
  call.start({
    onReceiveMetadata(md) {
      metadata = md;
      call.startRead();
    },
    onReceiveMessage(message) {
      request = message;
      received = true;
      call.startRead();
    },
    onReceiveHalfClose() {
      if (!received) {
        call.sendStatus({ code: Status.INVALID_ARGUMENT, details: `received no request message for ${method.path}` });
        return;
      }
      start(metadata, request, (o) => {
        object = o;
      });
    },
    onCancel() {
      markCancelled(object, method.kind === 'serverStream');
    },
  });
}

// Client-streaming and bidi: the handler runs at once and reads the stream.
function runStreaming(
  call: Inner,
  start: (metadata: Metadata) => Cancellable & { push(chunk: unknown): boolean },
): void {
  let object: (Cancellable & { push(chunk: unknown): boolean }) | undefined;
  call.start({
    onReceiveMetadata(md) {
      object = start(md);
    },
    onReceiveMessage(message) {
      object?.push(message);
    },
    onReceiveHalfClose() {
      object?.push(null);
    },
    onCancel() {
      markCancelled(object, true);
    },
  });
}
