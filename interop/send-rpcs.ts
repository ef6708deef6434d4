// The load both reference programs send ("send RPCs" in INTEROP.md): four
// loops, one per call kind, for five seconds; calls still running one second
// after that are cancelled, and any error fails the run.
import type { ClientDuplexStream, ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { Message, type TestServiceClient } from './gen/grpchantesting/test.js';

const RUN_MS = 5000;
const GRACE_MS = 1000;

/** The bytes 0, 1, 2, 3 repeated `times` times. */
function pattern(times: number): Buffer {
  const out = Buffer.allocUnsafe(4 * times);
  for (let i = 0; i < out.length; i++) out[i] = i & 3;
  return out;
}

// The same requests every time: building them is not what is measured.
const UNARY = Message.fromPartial({ count: 10, payload: pattern(100) });
const CLIENT_STREAM = Message.fromPartial({ count: 10, payload: pattern(10000) });
const SERVER_STREAM = Message.fromPartial({ count: 10, payload: pattern(1000) });
const BIDI = SERVER_STREAM;

type Cancellable = { cancel(): void };
/** A call in flight and the promise of its outcome. */
type Started = [Cancellable, Promise<void>];

/** Runs the load against `client`; rejects with the first error. */
export async function sendRPCs(client: TestServiceClient): Promise<void> {
  let done = false;
  const running = new Set<Cancellable>();
  const cancelAll = () => {
    for (const call of running) call.cancel();
  };
  const loops = [unary, clientStream, serverStream, bidiStream].map(async (start) => {
    while (!done) {
      const [call, outcome] = start(client);
      running.add(call);
      try {
        await outcome;
      } finally {
        running.delete(call);
      }
    }
  });
  const all = Promise.all(loops).catch((err: unknown) => {
    done = true;
    cancelAll();
    throw err;
  });
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, RUN_MS);
  });
  try {
    await Promise.race([all, elapsed]);
  } finally {
    clearTimeout(timer);
  }
  done = true;
  const grace = setTimeout(cancelAll, GRACE_MS);
  try {
    await all;
  } finally {
    clearTimeout(grace);
  }
}

function unary(client: TestServiceClient): Started {
  let call!: Cancellable;
  const outcome = new Promise<void>((resolve, reject) => {
    call = client.unary(UNARY, (err: ServiceError | null) => (err ? reject(err) : resolve()));
  });
  return [call, outcome];
}

function clientStream(client: TestServiceClient): Started {
  let call!: ReturnType<TestServiceClient['clientStream']>;
  const outcome = new Promise<void>((resolve, reject) => {
    call = client.clientStream((err: ServiceError | null) => (err ? reject(err) : resolve()));
  });
  for (let i = 0; i < 10; i++) call.write(CLIENT_STREAM);
  call.end();
  return [call, outcome];
}

function readAll(call: ClientReadableStream<Message> | ClientDuplexStream<Message, Message>): Promise<void> {
  return new Promise((resolve, reject) => {
    call.on('data', () => {});
    call.on('error', reject);
    call.on('end', resolve);
  });
}

function serverStream(client: TestServiceClient): Started {
  const call = client.serverStream(SERVER_STREAM);
  return [call, readAll(call)];
}

function bidiStream(client: TestServiceClient): Started {
  const call = client.bidiStream();
  const outcome = readAll(call);
  for (let i = 0; i < 10; i++) call.write(BIDI);
  call.end();
  return [call, outcome];
}
