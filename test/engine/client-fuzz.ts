// Random server-to-client frame sequences for the tunnel-client engine,
// while its application opens, writes, half-closes and cancels streams; and
// the checker that asserts the invariants:
// - nothing throws, and no stream fails for an error of our own making;
// - every stream the application opened and did not cancel is closed
//   exactly once (onClose), and nothing is sent on it after that;
// - the tunnel ends exactly at the first tunnel-level violation (Settings on
//   a stream, anything before Settings, a frame for an id never opened);
// - RESOURCE_EXHAUSTED for the window only when the server sent more than
//   its credit, and what one stream buffers stays within its window;
// - the shared window-growth budget is whole again once the tunnel ends,
//   and a normal call on a fresh tunnel sharing it works.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Code } from '#grpctunnel/engine/codes.js';
import { TUNNEL_STREAM_ID } from '#grpctunnel/engine/constants.js';
import { ReceiveWindows } from '#grpctunnel/engine/receive-window.js';
import { localStatus } from '#grpctunnel/engine/status.js';
import { TunnelClientEngine, type TunnelClientStream } from '#grpctunnel/engine/tunnel-client.js';
import type { ClientToServer, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import { type ClientStreamRecord, connectEngines, recordingHandlers, tick, wireC2S, wireS2C } from './harness.js';

/** Which stream id a server frame names. */
export type ClientIdRef = { kind: 'opened'; index: number } | { kind: 'unopened'; by: number } | { kind: 'tunnel' };

/** One step: a server frame, an application action, or a turn of the event loop. */
export type ClientAction =
  | { op: 'settings'; id: ClientIdRef; revisions: readonly number[]; window: number }
  | { op: 'headers'; id: ClientIdRef }
  | { op: 'message'; id: ClientIdRef; size: number; chunk: number }
  | { op: 'more'; id: ClientIdRef; chunk: number }
  | { op: 'burst'; id: ClientIdRef; size: number }
  | { op: 'close'; id: ClientIdRef; code: number }
  | { op: 'window'; id: ClientIdRef; n: number }
  | { op: 'empty'; id: ClientIdRef }
  | { op: 'open'; size: number; halfClose: boolean }
  | { op: 'cancel'; index: number }
  | { op: 'tick' };

const ref: fc.Arbitrary<ClientIdRef> = fc.oneof(
  { weight: 12, arbitrary: fc.nat(4).map((index) => ({ kind: 'opened' as const, index })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 100 }).map((by) => ({ kind: 'unopened' as const, by })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'tunnel' as const }) },
);

const chunk = fc.oneof(fc.constantFrom(0, 1, 16384, 16385), fc.nat(17000));

/** One client-side action. */
export const clientAction: fc.Arbitrary<ClientAction> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('settings' as const),
      id: fc.oneof(fc.constant({ kind: 'tunnel' as const }), ref),
      revisions: fc.constantFrom([0, 1], [0], [1], [], [5]),
      window: fc.constantFrom(1, 100, 65536),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('headers' as const), id: ref }) },
  {
    weight: 5,
    arbitrary: fc
      .record({
        op: fc.constant('message' as const),
        id: ref,
        size: fc.oneof(fc.constantFrom(0, 1, 16384, 70000, 4 * 1024 * 1024 + 1), fc.nat(100_000)),
        chunk,
        fits: fc.boolean(),
      })
      .map(({ fits, ...a }) => (fits ? { ...a, chunk: Math.min(a.chunk, a.size) } : a)),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('more' as const), id: ref, chunk }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('burst' as const), id: ref, size: fc.nat(200_000) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('close' as const), id: ref, code: fc.constantFrom(0, 0, 3, 8, 13, 14) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('window' as const),
      id: ref,
      n: fc.oneof(fc.constantFrom(0, 1, 65536, 0x7fffffff, 0xffffffff), fc.nat()),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('empty' as const), id: ref }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('open' as const),
      size: fc.constantFrom(0, 10, 70_000),
      halfClose: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('cancel' as const), index: fc.nat(4) }) },
  { weight: 3, arbitrary: fc.constant({ op: 'tick' as const }) },
);

/** Settings first (as a server sends), a stream or two, then anything. */
export const clientSequence = fc
  .tuple(fc.boolean(), fc.array(clientAction, { maxLength: 40 }))
  .map(([settingsFirst, rest]): ClientAction[] => [
    ...(settingsFirst
      ? [{ op: 'settings' as const, id: { kind: 'tunnel' as const }, revisions: [0, 1], window: 65536 }]
      : []),
    { op: 'open', size: 10, halfClose: true },
    ...rest,
  ]);

function serverFrames(a: ClientAction, id: number): ServerToClient[] {
  switch (a.op) {
    case 'settings':
      return [
        {
          streamId: id,
          frame: {
            $case: 'settings',
            value: { supportedProtocolRevisions: [...a.revisions], initialWindowSize: a.window },
          },
        },
      ];
    case 'headers':
      return [{ streamId: id, frame: { $case: 'responseHeaders', value: { md: {} } } }];
    case 'message':
      return [
        {
          streamId: id,
          frame: { $case: 'responseMessage', value: { size: a.size, data: Buffer.alloc(a.chunk, 1) } },
        },
      ];
    case 'more':
      return [{ streamId: id, frame: { $case: 'moreResponseData', value: Buffer.alloc(a.chunk, 2) } }];
    case 'burst': {
      const frames: ServerToClient[] = [];
      for (let offset = 0; offset === 0 || offset < a.size; offset += 16384) {
        const data = Buffer.alloc(Math.min(16384, a.size - offset), 3);
        frames.push(
          offset === 0
            ? { streamId: id, frame: { $case: 'responseMessage', value: { size: a.size, data } } }
            : { streamId: id, frame: { $case: 'moreResponseData', value: data } },
        );
      }
      return frames;
    }
    case 'close':
      return [
        {
          streamId: id,
          frame: {
            $case: 'closeStream',
            value: {
              responseTrailers: { md: {} },
              status: a.code === 0 ? undefined : { code: a.code, message: 'closed', details: [] },
            },
          },
        },
      ];
    case 'window':
      return [{ streamId: id, frame: { $case: 'windowUpdate', value: a.n } }];
    case 'empty':
      return [{ streamId: id, frame: undefined }];
    default:
      return [];
  }
}

const dataBytes = (f: ServerToClient): number =>
  f.frame?.$case === 'responseMessage'
    ? f.frame.value.data.length
    : f.frame?.$case === 'moreResponseData'
      ? f.frame.value.length
      : 0;

interface Opened {
  readonly stream: TunnelClientStream;
  readonly record: ClientStreamRecord;
  cancelled: boolean;
  /** How many frames had been written when its close was seen. */
  closedAt: number | undefined;
  sent: number;
  credit: number;
}

const BUDGET = 1 << 20;

/** Feeds a sequence to a fresh tunnel-client engine and checks every invariant. */
export async function runClientSequence(actions: readonly ClientAction[]): Promise<void> {
  const windows = new ReceiveWindows({ windowGrowthBudget: BUDGET, initialWindowSize: 16384, maxWindowSize: 1 << 18 });
  const written: ClientToServer[] = [];
  const protocolErrors: unknown[] = [];
  let ready = false;
  const engine = new TunnelClientEngine({
    negotiated: true,
    receiveWindows: windows,
    write: (f) => written.push(wireC2S(f)) > 0,
    onReady: () => {
      ready = true;
    },
    onProtocolError: (s) => protocolErrors.push(s),
  });
  engine.start();
  const opened: Opened[] = [];
  let settingsSeen = false;
  let violated = false;
  let credited = 0;
  const creditUpdates = () => {
    for (; credited < written.length; credited++) {
      const f = written[credited] as ClientToServer;
      const o = opened[f.streamId - 1];
      if (o && f.frame?.$case === 'windowUpdate') o.credit += f.frame.value;
    }
  };
  for (const [step, a] of actions.entries()) {
    if (a.op === 'tick') {
      await tick();
      continue;
    }
    if (a.op === 'open') {
      if (!ready || violated) continue;
      const entry: Partial<Opened> = { cancelled: false, closedAt: undefined, sent: 0, credit: windows.initial };
      const { record, handlers } = recordingHandlers(() => entry.stream?.requestRead());
      const stream = engine.openStream('/test.Echo/Bidi', { md: {} }, handlers);
      Object.assign(entry, { stream, record });
      opened.push(entry as Opened);
      stream.requestRead();
      stream.sendMessage(Buffer.alloc(a.size));
      if (a.halfClose) stream.halfClose();
      continue;
    }
    if (a.op === 'cancel') {
      const o = opened[a.index % Math.max(1, opened.length)];
      if (o && !o.stream.closed) o.cancelled = true;
      o?.stream.cancel();
      continue;
    }
    const id =
      a.id.kind === 'tunnel'
        ? TUNNEL_STREAM_ID
        : a.id.kind === 'unopened'
          ? opened.length + 1 + a.id.by
          : opened.length === 0
            ? 1
            : Number((opened[a.id.index % opened.length] as Opened).stream.streamId);
    for (const frame of serverFrames(a, id)) {
      creditUpdates();
      if (!violated && frame.frame) {
        if (frame.frame.$case === 'settings') {
          if (id !== TUNNEL_STREAM_ID) violated = true;
          else settingsSeen = true;
        } else if (!settingsSeen || id > opened.length || opened.length === 0) {
          // As the Go reference: an unknown id before the first stream or
          // above the last one is fatal; below it (negative too), dropped.
          violated = true;
        }
      }
      const o = opened[id - 1];
      if (o && !violated) o.sent += dataBytes(frame);
      assert.doesNotThrow(() => engine.handleFrame(wireS2C(frame)), `step ${step}`);
      assert.equal(protocolErrors.length, violated ? 1 : 0, `step ${step} (${a.op} on ${id})`);
      for (const o2 of opened) {
        if (o2.record.closes.length > 0 && o2.closedAt === undefined) o2.closedAt = written.length;
        for (const s of o2.record.closes) {
          assert.doesNotMatch(s.message, /failed to process a frame/, 'an error of our own making');
        }
        const last = o2.record.closes[0];
        if (last?.message === 'flow control window exceeded') {
          assert.ok(o2.sent > o2.credit, `stream ${o2.stream.streamId} failed after ${o2.sent} bytes of ${o2.credit}`);
        }
      }
    }
  }
  await tick();
  engine.close(localStatus(Code.UNAVAILABLE, 'the test ended the tunnel'));
  // Every stream ends once; nothing goes out on a stream after it ended.
  for (const o of opened) {
    const id = o.stream.streamId;
    assert.equal(o.record.closes.length, o.cancelled ? 0 : 1, `stream ${id}: onClose ${o.record.closes.length} times`);
    const after = written.slice(o.closedAt ?? written.length).filter((f) => f.streamId === id);
    assert.deepEqual(after, [], `frames on stream ${id} after its close`);
  }
  const endedAt = new Map<number, number>();
  for (const [i, f] of written.entries()) {
    const id = f.streamId;
    assert.ok(!endedAt.has(id), `frame ${i} (${f.frame?.$case}) on stream ${id} after its cancel`);
    if (f.frame?.$case === 'cancel') endedAt.set(id, i);
  }
  assert.equal(windows.available, BUDGET, 'window growth handed back once the tunnel ended');
  const fresh = connectEngines({ windows });
  await fresh.settle();
  const r = await fresh.unary(Buffer.from('ping'));
  assert.equal(r.status.code, Code.OK);
  assert.equal(Buffer.concat(r.reply).toString(), 'ping');
}
