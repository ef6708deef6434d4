// The soak's call scenarios: each makes one call of a given kind and shape
// and reports the status code it ended with, to compare with the code the
// scenario expects.
import { type Client, Metadata, type ServiceError, type StatusObject, status } from '@grpc/grpc-js';

type AnyClient = Client & Record<string, any>;

/** One kind of call the soak makes, with the status it must end with. */
export interface Scenario {
  readonly name: string;
  readonly expected: status;
  run(client: AnyClient): Promise<{ code: status; details: string }>;
}

/** A deadline far enough away that it only fires when something hangs. */
const SAFETY_MS = 30_000;
const safety = () => ({ deadline: Date.now() + SAFETY_MS });

function md(entries: Record<string, string> = {}): Metadata {
  const m = new Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

function outcome(err: ServiceError | null | undefined): { code: status; details: string } {
  return err ? { code: err.code, details: err.details } : { code: status.OK, details: '' };
}

function unaryCall(
  client: AnyClient,
  request: Buffer,
  metadata: Metadata,
  options: object,
  check?: (r: Buffer) => boolean,
) {
  return new Promise<{ code: status; details: string }>((resolve) => {
    client.unary(request, metadata, options, (err: ServiceError | null, reply?: Buffer) => {
      if (!err && check && !(reply && check(reply))) {
        resolve({ code: status.DATA_LOSS, details: 'the reply differs from the request' });
        return;
      }
      resolve(outcome(err));
    });
  });
}

/** Waits for a streaming call's status (the 'status' event always comes, after the data). */
function statusOf(call: NodeJS.EventEmitter & { resume(): unknown }): Promise<{ code: status; details: string }> {
  return new Promise((resolve) => {
    // Flowing, so that the status is not held behind unread messages.
    call.resume();
    call.on('error', () => {});
    call.on('status', (s: StatusObject) => resolve({ code: s.code, details: s.details }));
  });
}

const payload = (size: number) => Buffer.alloc(size, size & 0xff);

/** Every scenario, with its relative weight in the mix. */
export const SCENARIOS: ReadonlyArray<readonly [Scenario, number]> = [
  [
    {
      name: 'unary',
      expected: status.OK,
      run: (c) => {
        const req = payload(100);
        return unaryCall(c, req, md(), safety(), (r) => r.equals(req));
      },
    },
    30,
  ],
  [
    {
      name: 'unary-1MiB',
      expected: status.OK,
      run: (c) => {
        const req = payload(1 << 20);
        return unaryCall(c, req, md(), safety(), (r) => r.length === req.length);
      },
    },
    2,
  ],
  [
    {
      name: 'unary-3.5MiB',
      expected: status.OK,
      run: (c) => unaryCall(c, payload(3.5 * 1024 * 1024), md(), safety(), (r) => r.length === 3.5 * 1024 * 1024),
    },
    0.3,
  ],
  [
    {
      name: 'client-stream',
      expected: status.OK,
      run: (c) =>
        new Promise((resolve) => {
          const call = c.clientStream(md(), safety(), (err: ServiceError | null, reply?: Buffer) => {
            if (!err && reply?.toString() !== String(20 * 5000)) {
              resolve({ code: status.DATA_LOSS, details: `counted ${reply?.toString()}` });
            } else resolve(outcome(err));
          });
          for (let i = 0; i < 20; i++) call.write(payload(5000));
          call.end();
        }),
    },
    8,
  ],
  [
    {
      name: 'server-stream',
      expected: status.OK,
      run: async (c) => {
        const call = c.serverStream(Buffer.from(JSON.stringify({ count: 30, size: 20_000 })), md(), safety());
        let n = 0;
        call.on('data', () => n++);
        const s = await statusOf(call);
        return s.code === status.OK && n !== 30 ? { code: status.DATA_LOSS, details: `${n} messages` } : s;
      },
    },
    8,
  ],
  [
    {
      name: 'bidi',
      expected: status.OK,
      run: async (c) => {
        const call = c.bidi(md(), safety());
        let bytes = 0;
        call.on('data', (b: Buffer) => {
          bytes += b.length;
        });
        const done = statusOf(call);
        for (let i = 0; i < 20; i++) call.write(payload(i * 1000));
        call.end();
        const s = await done;
        return s.code === status.OK && bytes !== 190_000 ? { code: status.DATA_LOSS, details: `${bytes} bytes` } : s;
      },
    },
    8,
  ],
  [
    {
      name: 'error',
      expected: status.FAILED_PRECONDITION,
      run: (c) => unaryCall(c, payload(10), md({ 'x-status-code': String(status.FAILED_PRECONDITION) }), safety()),
    },
    5,
  ],
  [
    {
      name: 'stream-error',
      expected: status.ABORTED,
      run: (c) =>
        statusOf(
          c.serverStream(
            Buffer.from(JSON.stringify({ count: 3, size: 10 })),
            md({ 'x-status-code': String(status.ABORTED) }),
            safety(),
          ),
        ),
    },
    3,
  ],
  [
    {
      name: 'deadline',
      expected: status.DEADLINE_EXCEEDED,
      run: (c) => unaryCall(c, payload(10), md({ 'x-delay-ms': '300' }), { deadline: Date.now() + 30 }),
    },
    4,
  ],
  [
    {
      name: 'cancel-server-stream',
      expected: status.CANCELLED,
      run: (c) => {
        const call = c.serverStream(Buffer.from(JSON.stringify({ count: 10_000, size: 1000 })), md(), safety());
        call.once('data', () => call.cancel());
        return statusOf(call);
      },
    },
    4,
  ],
  [
    {
      name: 'cancel-bidi',
      expected: status.CANCELLED,
      run: (c) => {
        const call = c.bidi(md(), safety());
        call.once('data', () => call.cancel());
        call.write(payload(70_000));
        call.write(payload(10));
        return statusOf(call);
      },
    },
    3,
  ],
  [
    {
      name: 'unimplemented',
      expected: status.UNIMPLEMENTED,
      run: (c) =>
        new Promise((resolve) => {
          c.makeUnaryRequest(
            '/soak.Soak/Nope',
            (b: Buffer) => b,
            (b: Buffer) => b,
            payload(1),
            md(),
            safety(),
            (err: ServiceError | null) => resolve(outcome(err)),
          );
        }),
    },
    2,
  ],
];

const totalWeight = SCENARIOS.reduce((sum, [, w]) => sum + w, 0);

/** Picks a scenario at random, by weight. */
export function pickScenario(random: () => number = Math.random): Scenario {
  let r = random() * totalWeight;
  for (const [scenario, weight] of SCENARIOS) {
    r -= weight;
    if (r < 0) return scenario;
  }
  return (SCENARIOS[0] as readonly [Scenario, number])[0];
}
