import type { MethodDefinition } from '@grpc/grpc-js';

/** Turns messages into bytes and back (the same codec for requests and responses). */
export interface MessageCodec<T> {
  serialize(value: T): Buffer;
  deserialize(bytes: Buffer): T;
}

/** Passes Buffers through unchanged: services whose messages are raw bytes. */
export const rawBytesCodec: MessageCodec<Buffer> = { serialize: (b) => b, deserialize: (b) => b };

/**
 * A grpc-js method definition for hand-written services (the demo, the
 * benchmark, the tests) that need no .proto: `/service/Name`, with
 * grpc-js's lower-camel `originalName`.
 */
export function methodDefinition<T>(
  service: string,
  name: string,
  requestStream: boolean,
  responseStream: boolean,
  codec: MessageCodec<T>,
): MethodDefinition<T, T> {
  return {
    path: `/${service}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: codec.serialize,
    requestDeserialize: codec.deserialize,
    responseSerialize: codec.serialize,
    responseDeserialize: codec.deserialize,
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}
