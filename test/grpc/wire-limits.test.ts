// Wire-level edge cases a tunnel server must take from any peer (issue 11):
// the longest deadlines grpc-timeout can state, a revision-one stream that
// opens with a zero window, and metadata over the tunnel's size limit. Each
// scenario ends with a normal call on the same tunnel, so a fix that tore the
// tunnel down would still fail.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { credentials, type handleUnaryCall, Metadata, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { methodDefinition, rawBytesCodec } from '../../src/cli/method-definition.js';
import { TunnelServiceHandler } from '../../src/index.js';
import { EchoClient, type EchoObservations, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { c2s, closeOf, type RawClient, rawClient, sendUnary } from '../helpers/raw-peer.js';
import { startServer, stopAllServers } from '../helpers/servers.js';

afterEach(stopAllServers);

const HOUR_MS = 3_600_000;

/** A service that reports the deadline its handler sees, and what a call it makes with that deadline sees. */
const DeadlineService = {
  report: methodDefinition('test.Deadline', 'Report', false, false, rawBytesCodec),
};

function deadlineMs(d: Date | number): number {
  return d instanceof Date ? d.getTime() : d;
}

/** Collects process warnings (TimeoutOverflowWarning above all) while a test runs. */
function watchWarnings() {
  const warnings: Error[] = [];
  const listener = (w: Error) => warnings.push(w);
  process.on('warning', listener);
  return { warnings, stop: () => process.off('warning', listener) };
}

async function tunnelServer(setup?: (handler: TunnelServiceHandler) => void) {
  const handler = new TunnelServiceHandler();
  handler.addService(EchoService, echoImplementation());
  setup?.(handler);
  return startServer((s) => handler.register(s));
}

/** A raw peer past Settings, on a fresh tunnel. */
async function negotiatedPeer(address: string): Promise<RawClient> {
  const peer = rawClient(address);
  const settings = await peer.frames.next();
  assert.equal(settings?.frame?.$case, 'settings');
  return peer;
}

/** A normal unary call on stream `id` of the same tunnel still works. */
async function assertTunnelServes(peer: RawClient, id: number) {
  sendUnary(peer, id, Buffer.from('still here'));
  const r = await closeOf(peer, id);
  assert.equal(r.status, undefined, `stream ${id} succeeds`);
  const data = r.frames.find((f) => f.frame?.$case === 'responseMessage');
  assert.ok(data?.frame?.$case === 'responseMessage');
  assert.equal(Buffer.from(data.frame.value.data).toString(), 'still here');
}

describe('long deadlines on the tunnel server', () => {
  it('serves grpc-timeout 720H and 99999999H with no warning, and getDeadline() reports them', async () => {
    // Downstream: a plain grpc-js server the handler calls with the deadline it was given.
    const downstreamSeen: EchoObservations = { cancelled: [] };
    const { address: downstream } = await startServer((s) =>
      s.addService(EchoService, echoImplementation(downstreamSeen)),
    );
    const next = new EchoClient(downstream, credentials.createInsecure());
    const report: handleUnaryCall<Buffer, Buffer> = (call: ServerUnaryCall<Buffer, Buffer>, callback) => {
      const deadline = call.getDeadline();
      // Propagate to a further call as a handler would. grpc-js's own server
      // truncates timeouts past 2^31 ms, so the propagated call uses the
      // short form below when the test asks for it in the request.
      const propagate = call.request.toString() === 'propagate';
      if (!propagate) {
        callback(null, Buffer.from(JSON.stringify({ deadline: deadlineMs(deadline) })));
        return;
      }
      next.unary(Buffer.from('x'), new Metadata(), { parent: call }, (err: ServiceError | null) => {
        callback(err, Buffer.from(JSON.stringify({ deadline: deadlineMs(deadline) })));
      });
    };
    const { address } = await tunnelServer((h) => h.addService(DeadlineService, { report }));
    const watch = watchWarnings();
    const peer = await negotiatedPeer(address);
    try {
      let id = 1;
      for (const [timeout, ms] of [
        ['720H', 720 * HOUR_MS],
        ['99999999H', 99_999_999 * HOUR_MS],
        ['2147483648m', undefined], // nine digits: malformed, so no deadline
        ['3000000S', 3_000_000_000],
      ] as const) {
        const before = Date.now();
        peer.send(c2s.newStream(id, '/test.Deadline/Report', 1, 65536, { 'grpc-timeout': timeout }));
        peer.send(c2s.message(id, 0, Buffer.alloc(0)));
        peer.send(c2s.halfClose(id));
        const r = await closeOf(peer, id);
        assert.equal(r.status, undefined, `grpc-timeout ${timeout} is served, not failed at once`);
        const body = r.frames.find((f) => f.frame?.$case === 'responseMessage');
        assert.ok(body?.frame?.$case === 'responseMessage');
        const seen = JSON.parse(Buffer.from(body.frame.value.data).toString()) as { deadline: number | null };
        if (ms === undefined) {
          // JSON turns Infinity into null.
          assert.equal(seen.deadline, null, `${timeout}: no deadline`);
        } else {
          assert.ok(
            seen.deadline !== null && seen.deadline >= before + ms && seen.deadline <= Date.now() + ms,
            `${timeout}: getDeadline() is ${seen.deadline}, expected about ${before + ms}`,
          );
        }
        id += 2;
      }
      // A handler passing its (long) deadline on to a further call through grpc-js.
      const before = Date.now();
      peer.send(c2s.newStream(id, '/test.Deadline/Report', 1, 65536, { 'grpc-timeout': '20H' }));
      const req = Buffer.from('propagate');
      peer.send(c2s.message(id, req.length, req));
      peer.send(c2s.halfClose(id));
      const r = await closeOf(peer, id);
      assert.equal(r.status, undefined, 'the propagated call succeeds');
      const got = deadlineMs(downstreamSeen.lastDeadline ?? Number.NaN);
      assert.ok(
        got >= before + 20 * HOUR_MS - 1000 && got <= Date.now() + 20 * HOUR_MS + 1000,
        `the downstream handler sees the propagated deadline (${got})`,
      );
      await assertTunnelServes(peer, id + 2);
      assert.deepEqual(
        watch.warnings.map((w) => `${w.name}: ${w.message}`),
        [],
        'no TimeoutOverflowWarning or other warning',
      );
    } finally {
      watch.stop();
      peer.close();
      next.close();
    }
  });
});

describe('initial_window_size 0 on a revision-one new_stream', () => {
  it('is a zero window: no response data until the client grants some', async () => {
    const { address } = await tunnelServer();
    const peer = await negotiatedPeer(address);
    try {
      const payload = Buffer.from('held back');
      peer.send(c2s.newStream(1, '/test.Echo/Unary', 1, 0));
      peer.send(c2s.message(1, payload.length, payload));
      peer.send(c2s.halfClose(1));
      // Stream 3 is answered after stream 1's handler has replied (both
      // handlers reply on a zero-delay timer, stream 1's first): by the time
      // stream 3 closes, stream 1's response would have been written had the
      // window been anything but 0.
      sendUnary(peer, 3, Buffer.from('other'));
      const other = await closeOf(peer, 3);
      assert.equal(other.status, undefined);
      const early = other.all.filter((f) => f.streamId === 1).map((f) => f.frame?.$case);
      assert.ok(!early.includes('responseMessage'), `no data on a zero window (saw ${early.join(', ')})`);
      assert.ok(!early.includes('closeStream'), 'the stream waits for its window, it is not closed');
      peer.send(c2s.window(1, payload.length));
      const held = await closeOf(peer, 1);
      assert.equal(held.status, undefined);
      const data = held.frames.find((f) => f.frame?.$case === 'responseMessage');
      assert.ok(data?.frame?.$case === 'responseMessage');
      assert.deepEqual(Buffer.from(data.frame.value.data), payload);
      await assertTunnelServes(peer, 5);
    } finally {
      peer.close();
    }
  });
});
