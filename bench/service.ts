// The benchmark's service: raw bytes, so encoding costs nothing and the
// figures measure transport alone.
import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServiceDefinition,
} from '@grpc/grpc-js';
import { methodDefinition, rawBytesCodec } from '../test/helpers/method-definition.js';

const method = (name: string, requestStream: boolean, responseStream: boolean) =>
  methodDefinition('bench.Bench', name, requestStream, responseStream, rawBytesCodec);

export const BenchService = {
  unary: method('Unary', false, false),
  stream: method('Stream', false, true),
  pingPong: method('PingPong', true, true),
  upload: method('Upload', true, false),
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

/** Answers each message with the same bytes. */
const pingPong: handleBidiStreamingCall<Buffer, Buffer> = (call) => {
  call.on('data', (m: Buffer) => call.write(m));
  call.on('end', () => call.end());
  call.on('error', () => {});
};

/** Reads everything and answers with the byte count (u32). */
const upload: handleClientStreamingCall<Buffer, Buffer> = (call, callback) => {
  let bytes = 0;
  call.on('data', (m: Buffer) => {
    bytes += m.length;
  });
  call.on('end', () => {
    const reply = Buffer.alloc(4);
    reply.writeUInt32BE(bytes >>> 0, 0);
    callback(null, reply);
  });
  call.on('error', () => {});
};

export const benchImplementation = { unary, stream, pingPong, upload };
