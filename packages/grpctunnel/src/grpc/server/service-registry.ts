import type {
  deserialize as Deserialize,
  handleBidiStreamingCall,
  MethodDefinition,
  serialize as Serialize,
  ServiceDefinition,
  UntypedHandleCall,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';

/** The four call kinds, named as grpc-js names them. */
export type MethodKind = 'unary' | 'clientStream' | 'serverStream' | 'bidi';

/** A method a tunnel server can answer. */
export interface RegisteredMethod {
  readonly path: string;
  readonly kind: MethodKind;
  readonly definition: MethodDefinition<unknown, unknown>;
  readonly handler: UntypedHandleCall;
  readonly serialize: Serialize<unknown>;
  readonly deserialize: Deserialize<unknown>;
}

function kindOf(definition: MethodDefinition<unknown, unknown>): MethodKind {
  if (definition.requestStream) return definition.responseStream ? 'bidi' : 'clientStream';
  return definition.responseStream ? 'serverStream' : 'unary';
}

/**
 * Services hosted behind tunnels, keyed by full method path. It accepts the
 * same (definition, implementation) pairs as grpc-js's `Server.addService`,
 * so services from `@grpc/proto-loader` or generated code register unchanged.
 */
export class ServiceRegistry {
  private readonly methods = new Map<string, RegisteredMethod>();
  private fallback: handleBidiStreamingCall<Buffer, Buffer> | undefined;

  /** Registers every method of a service; throws if the service has none or a path is taken. */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    if (
      service === null ||
      typeof service !== 'object' ||
      implementation === null ||
      typeof implementation !== 'object'
    ) {
      throw new Error('addService() requires two objects as arguments');
    }
    const names = Object.keys(service);
    if (names.length === 0) throw new Error('Cannot add an empty service to a server');
    for (const name of names) {
      const definition = service[name] as MethodDefinition<unknown, unknown>;
      const original = definition.originalName;
      const handler = (implementation[name] ?? (original ? implementation[original] : undefined)) as
        | UntypedHandleCall
        | undefined;
      if (this.methods.has(definition.path)) {
        throw new Error(`Method handler for ${definition.path} already provided.`);
      }
      if (typeof handler !== 'function') continue; // grpc-js answers these with UNIMPLEMENTED; so do we
      this.methods.set(definition.path, {
        path: definition.path,
        kind: kindOf(definition),
        definition,
        handler,
        serialize: definition.responseSerialize,
        deserialize: definition.requestDeserialize,
      });
    }
  }

  /** Removes every method of a service. */
  removeService(service: ServiceDefinition): void {
    for (const definition of Object.values(service)) this.methods.delete(definition.path);
  }

  /**
   * Serves every path that no service registered: as a bidi-streaming call on
   * raw message bytes (gRPC frames all four kinds alike, so a proxy need not
   * know which one it carries). Undefined turns it off again.
   */
  setUnknownMethodHandler(handler: handleBidiStreamingCall<Buffer, Buffer> | undefined): void {
    this.fallback = handler;
  }

  /** The method registered at `path`, or the unknown-method handler, if any. */
  lookup(path: string): RegisteredMethod | undefined {
    const method = this.methods.get(path);
    if (method || !this.fallback) return method;
    const definition: MethodDefinition<Buffer, Buffer> = {
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: bytes,
      requestDeserialize: bytes,
      responseSerialize: bytes,
      responseDeserialize: bytes,
    };
    return {
      path,
      kind: 'bidi',
      definition: definition as MethodDefinition<unknown, unknown>,
      handler: this.fallback as UntypedHandleCall,
      serialize: bytes as Serialize<unknown>,
      deserialize: bytes as Deserialize<unknown>,
    };
  }
}

const bytes = (b: Buffer): Buffer => b;
