// The soak's service: raw-bytes messages, steered by request metadata
// (x-delay-ms, x-status-code), every handler honouring cancellation and
// write back-pressure, so that what piles up is bounded by the windows.
import {
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type Metadata,
  makeGenericClientConstructor,
  type ServiceDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import { methodDefinition, rawBytesCodec } from '../test/helpers/method-definition.js';

const method = (name: string, requestStream: boolean, responseStream: boolean) =>
  methodDefinition('soak.Soak', name, requestStream, responseStream, rawBytesCodec);

/** The soak service definition. */
export const SoakService = {
  unary: method('Unary', false, false),
  clientStream: method('ClientStream', true, false),
  serverStream: method('ServerStream', false, true),
  bidi: method('Bidi', true, true),
} satisfies ServiceDefinition;

/** A grpc-js client of {@link SoakService} (methods typed loosely, as generic clients are). */
export const SoakClient = makeGenericClientConstructor(SoakService, 'Soak');

function requested(md: Metadata): Partial<ServiceError> | null {
  const code = md.get('x-status-code')[0];
  return code === undefined ? null : { code: Number(code), details: 'requested failure' };
}

const delayOf = (md: Metadata) => Number(md.get('x-delay-ms')[0] ?? 0);

const unary: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
  const timer = setTimeout(() => {
    const err = requested(call.metadata);
    if (err) callback(err);
    else callback(null, call.request);
  }, delayOf(call.metadata));
  call.on('cancelled', () => clearTimeout(timer));
};

const clientStream: handleClientStreamingCall<Buffer, Buffer> = (call, callback) => {
  let total = 0;
  call.on('data', (b: Buffer) => {
    total += b.length;
  });
  call.on('end', () => {
    const err = requested(call.metadata);
    if (err) callback(err);
    else callback(null, Buffer.from(String(total)));
  });
};

const serverStream: handleServerStreamingCall<Buffer, Buffer> = (call) => {
  const { count, size } = JSON.parse(call.request.toString()) as { count: number; size: number };
  let i = 0;
  const step = () => {
    while (i < count && !call.cancelled) {
      i++;
      if (!call.write(Buffer.alloc(size, i & 0xff))) {
        call.once('drain', step);
        return;
      }
    }
    if (call.cancelled) return;
    const err = requested(call.metadata);
    if (err) call.emit('error', err);
    else call.end();
  };
  step();
};

const bidi: handleBidiStreamingCall<Buffer, Buffer> = (call) => {
  // Echo, reading no further while a reply waits for the peer's window.
  call.on('data', (b: Buffer) => {
    if (!call.write(b)) {
      call.pause();
      call.once('drain', () => call.resume());
    }
  });
  call.on('end', () => {
    const err = requested(call.metadata);
    if (err) call.emit('error', err);
    else call.end();
  });
};

/** The handlers of {@link SoakService}. */
export const soakImplementation = { unary, clientStream, serverStream, bidi };
