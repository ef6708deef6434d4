// grpchantesting.TestService as the reference programs serve it (INTEROP.md):
// requests steer delays, headers, trailers and failures; replies echo the
// payload and the request metadata.
import { Metadata, type ServerErrorResponse, status as Status } from '@grpc/grpc-js';
import { Status as RpcStatus } from './gen/google/rpc/status.js';
import { Message, type TestServiceServer } from './gen/grpchantesting/test.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Header maps of a Message as grpc-js metadata; keys lower-cased, `-bin` values kept as bytes. */
function toMetadata(map: Record<string, Buffer>): Metadata {
  const md = new Metadata();
  for (const [rawKey, value] of Object.entries(map)) {
    const key = rawKey.toLowerCase();
    if (key.endsWith('-bin')) md.set(key, value);
    else md.set(key, value.toString('utf8'));
  }
  return md;
}

/** Request metadata as a map of the last value per key. */
function asMap(md: Metadata): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const key of Object.keys(md.getMap())) {
    const all = md.get(key);
    const last = all[all.length - 1];
    if (last === undefined) continue;
    out[key] = Buffer.isBuffer(last) ? last : Buffer.from(last, 'utf8');
  }
  return out;
}

/** The failure a request asks for: its code, message "error", and its details. */
function failure(req: Message, trailers: Metadata): Partial<ServerErrorResponse> {
  if (req.errorDetails.length > 0) {
    const details = RpcStatus.encode({ code: req.code, message: 'error', details: req.errorDetails }).finish();
    trailers.set('grpc-status-details-bin', Buffer.from(details));
  }
  return { code: req.code as Status, details: 'error', metadata: trailers };
}

const empty = (): Message => Message.fromPartial({});

/** Creates the TestService implementation; `onCall` runs once per RPC served (for the programs' counts). */
export function testServiceImplementation(onCall: () => void = () => {}): TestServiceServer {
  return {
    unary(call, callback) {
      onCall();
      const req = call.request;
      void (async () => {
        if (req.delayMillis > 0) await sleep(req.delayMillis);
        call.sendMetadata(toMetadata(req.headers));
        const trailers = toMetadata(req.trailers);
        if (req.code !== Status.OK) {
          callback(failure(req, trailers));
          return;
        }
        callback(null, Message.fromPartial({ payload: req.payload, headers: asMap(call.metadata) }), trailers);
      })();
    },

    clientStream(call, callback) {
      onCall();
      let last: Message | undefined;
      let count = 0;
      let finished = false;
      const finish = async () => {
        if (finished) return;
        finished = true;
        const req = last ?? empty();
        if (req.delayMillis > 0) await sleep(req.delayMillis);
        call.sendMetadata(toMetadata(req.headers));
        const trailers = toMetadata(req.trailers);
        if (req.code !== Status.OK) {
          callback(failure(req, trailers));
          return;
        }
        callback(null, Message.fromPartial({ payload: req.payload, headers: asMap(call.metadata), count }), trailers);
      };
      call.on('data', (req: Message) => {
        if (finished) return;
        last = req;
        count++;
        if (req.code !== Status.OK) void finish();
      });
      call.on('end', () => void finish());
    },

    serverStream(call) {
      onCall();
      const req = call.request;
      void (async () => {
        if (req.delayMillis > 0) await sleep(req.delayMillis);
        call.sendMetadata(toMetadata(req.headers));
        const headers = asMap(call.metadata);
        for (let i = 0; i < req.count && !call.cancelled; i++) {
          if (!call.write(Message.fromPartial({ payload: req.payload, headers }))) {
            await new Promise((resolve) => call.once('drain', resolve));
          }
        }
        const trailers = toMetadata(req.trailers);
        if (req.code !== Status.OK) call.emit('error', failure(req, trailers));
        else call.end(trailers);
      })();
    },

    bidiStream(call) {
      onCall();
      const headers = asMap(call.metadata);
      let count = 0;
      let halfDuplex = false;
      let last: Message | undefined;
      let stopped = false;
      const held: Message[] = [];
      const end = () => {
        const req = last ?? empty();
        for (const reply of held) call.write(reply);
        const trailers = toMetadata(req.trailers);
        if (req.code !== Status.OK) call.emit('error', failure(req, trailers));
        else call.end(trailers);
      };
      // As the Go handler does: one request at a time, and the next is read
      // only once the reply to this one is written. A peer that stops reading
      // replies therefore stops being read, and one that keeps sending runs
      // past its flow-control window (and gets RESOURCE_EXHAUSTED).
      const handle = async (req: Message) => {
        if (req.delayMillis > 0) await sleep(req.delayMillis);
        last = req;
        if (count === 0) {
          call.sendMetadata(toMetadata(req.headers));
          halfDuplex = req.count < 0;
        }
        count++;
        if (req.code !== Status.OK) {
          stopped = true;
          end();
          return;
        }
        const reply = Message.fromPartial({ payload: req.payload, headers, count });
        if (halfDuplex) held.push(reply);
        else await new Promise<void>((resolve) => call.write(reply, () => resolve()));
        call.resume();
      };
      call.on('data', (req: Message) => {
        if (stopped) return;
        call.pause();
        void handle(req);
      });
      call.on('end', () => {
        if (stopped) return;
        stopped = true;
        end();
      });
    },

    useExternalMessageTwice(_call, callback) {
      onCall();
      callback(null, {});
    },
  };
}
