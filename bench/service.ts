// The benchmark's service: raw bytes, so encoding costs nothing and the
// figures measure transport alone.
import type { handleServerStreamingCall, handleUnaryCall, ServiceDefinition } from '@grpc/grpc-js';

const identity = (b: Buffer) => b;

function method(name: string, responseStream: boolean) {
  return {
    path: `/bench.Bench/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}

export const BenchService = {
  unary: method('Unary', false),
  stream: method('Stream', true),
} satisfies ServiceDefinition;

const unary: handleUnaryCall<Buffer, Buffer> = (call, callback) => callback(null, call.request);

/** Streams messages of the requested size until the client cancels (request: u32 size). */
const stream: handleServerStreamingCall<Buffer, Buffer> = (call) => {
  const message = Buffer.alloc(call.request.readUInt32BE(0), 1);
  const pump = () => {
    while (!call.cancelled && !call.destroyed) {
      if (!call.write(message)) {
        call.once('drain', pump);
        return;
      }
    }
  };
  call.on('cancelled', () => call.end());
  call.on('error', () => {});
  pump();
};

export const benchImplementation = { unary, stream };
