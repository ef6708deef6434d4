// The protocol state machines, driven directly: a tunnel-client engine wired
// to a tunnel-server engine in memory (test/engine/harness.ts), no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code } from '#grpctunnel/engine/codes.js';
import { connectEngines, recordingHandlers } from './harness.js';

const kinds = (frames: Array<{ streamId: number; frame?: { $case: string } | undefined }>, id: number) =>
  frames.filter((f) => f.streamId === id).map((f) => f.frame?.$case);

describe('engines connected in memory', () => {
  it('a unary call: Settings first, then the frames the Go reference sends', async () => {
    const pair = connectEngines();
    await pair.settle();
    const r = await pair.unary(Buffer.from('hello'));
    assert.equal(r.status.code, Code.OK);
    assert.equal(Buffer.concat(r.reply).toString(), 'hello');
    assert.equal(pair.toClient[0]?.frame?.$case, 'settings');
    assert.deepEqual(kinds(pair.toServer, 1), ['newStream', 'requestMessage', 'halfClose']);
    assert.deepEqual(kinds(pair.toClient, 1), ['responseHeaders', 'responseMessage', 'closeStream']);
  });

  it('a message larger than the window flows in chunks of at most 16 KiB, paced by window updates', async () => {
    const pair = connectEngines({ server: { initialWindowSize: 16384 }, client: { initialWindowSize: 16384 } });
    await pair.settle();
    const payload = Buffer.alloc(200_000, 3);
    const r = await pair.unary(payload);
    assert.equal(r.status.code, Code.OK);
    assert.ok(Buffer.concat(r.reply).equals(payload));
    const chunks = pair.toServer.flatMap((f) =>
      f.frame?.$case === 'requestMessage'
        ? [f.frame.value.data.length]
        : f.frame?.$case === 'moreRequestData'
          ? [f.frame.value.length]
          : [],
    );
    assert.equal(
      chunks.reduce((a, b) => a + b, 0),
      200_000,
    );
    assert.ok(chunks.every((n) => n <= 16384));
    assert.ok(pair.toClient.some((f) => f.frame?.$case === 'windowUpdate'));
  });

  it('a cancel ends the stream on both sides once, with no close_stream', async () => {
    const pair = connectEngines();
    await pair.settle();
    const { record, handlers } = recordingHandlers();
    const stream = pair.client.openStream('/test.Echo/Stall', { md: {} }, handlers);
    stream.sendMessage(Buffer.alloc(10));
    await pair.settle();
    stream.cancel();
    await pair.settle();
    assert.deepEqual(record.closes, [], 'the caller reports its own status');
    assert.equal(pair.records[0]?.cancelledWith.length, 1);
    assert.deepEqual(kinds(pair.toClient, 1), []);
    assert.equal(pair.server.activeStreams, 0);
    assert.equal(pair.client.activeStreams, 0);
  });

  it('revision zero: no Settings, no window updates', async () => {
    const pair = connectEngines({ negotiated: false });
    await pair.settle();
    const r = await pair.unary(Buffer.alloc(100_000, 1));
    assert.equal(r.status.code, Code.OK);
    assert.ok(!pair.toClient.some((f) => f.frame?.$case === 'settings' || f.frame?.$case === 'windowUpdate'));
    assert.ok(!pair.toServer.some((f) => f.frame?.$case === 'windowUpdate'));
  });

  it('a tunnel-level violation ends the tunnel and closes every open stream once', async () => {
    const pair = connectEngines();
    await pair.settle();
    const { record, handlers } = recordingHandlers();
    pair.client.openStream('/test.Echo/Stall', { md: {} }, handlers);
    await pair.settle();
    pair.server.handleFrame({
      streamId: 1,
      frame: {
        $case: 'newStream',
        value: {
          methodName: '/test.Echo/Stall',
          requestHeaders: { md: {} },
          initialWindowSize: 65536,
          protocolRevision: 1,
        },
      },
    });
    await pair.settle();
    assert.match(pair.protocolErrors.server[0]?.message ?? '', /cannot create stream ID 1/);
    assert.deepEqual(
      record.closes.map((s) => s.code),
      [Code.UNAVAILABLE],
    );
    assert.equal(pair.records[0]?.cancelledWith.length, 1);
  });
});
