// Protocol behaviour against hand-built frames: negotiation, limits, and bad
// input from a raw peer. Each bad input gets its documented outcome, and the
// tunnel's other streams (or, for fatal errors, other tunnels) keep working.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Server } from '@grpc/grpc-js';
import { credentials, status } from '@grpc/grpc-js';
import { openTunnel, TunnelServiceHandler } from 'grpctunnel';
import { unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import {
  c2s,
  closeOf,
  RawTunnelServiceDefinition,
  rawClient,
  rawTunnelService,
  sendUnary,
} from '../helpers/raw-peer.js';
import { startServer, stopServer } from '../helpers/servers.js';

function msgOf(peer: { frames: unknown }, frames: Array<{ frame?: { $case: string; value: unknown } | undefined }>) {
  void peer;
  const out: Buffer[] = [];
  for (const f of frames) {
    if (f.frame?.$case === 'responseMessage') out.push(Buffer.from((f.frame.value as { data: Uint8Array }).data));
    if (f.frame?.$case === 'moreResponseData')
      out[out.length - 1] = Buffer.concat([out[out.length - 1]!, f.frame.value as Uint8Array]);
  }
  return out;
}

describe('tunnel server protocol', () => {
  let server: Server;
  let address: string;
  before(async () => {
    const handler = new TunnelServiceHandler({ maxConcurrentStreams: 3 });
    handler.addService(EchoService, echoImplementation());
    ({ server, address } = await startServer((s) => handler.register(s)));
  });
  after(() => stopServer(server));

  it('answers negotiation with headers at once and Settings first', async () => {
    const peer = rawClient(address);
    const headers = await peer.headers;
    assert.equal(headers.get('grpctunnel-negotiate')[0], 'on');
    const first = await peer.frames.next();
    assert.deepEqual(first, {
      streamId: -1,
      frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
    });
    sendUnary(peer, 1, Buffer.from('hi'));
    const { frames, status: st } = await closeOf(peer, 1);
    assert.equal(st, undefined, 'success carries no status');
    assert.deepEqual(
      frames.map((f) => f.frame?.$case),
      ['responseHeaders', 'responseMessage', 'closeStream'],
    );
    assert.deepEqual(msgOf(peer, frames), [Buffer.from('hi')]);
    peer.close();
  });

  it('runs revision zero with a client that does not negotiate', async () => {
    const peer = rawClient(address, false);
    sendUnary(peer, 0, Buffer.alloc(70000, 1), '/test.Echo/Unary', 0);
    const { all, status: st } = await closeOf(peer, 0);
    assert.equal(st?.code ?? 0, status.INVALID_ARGUMENT, 'the single 70000-byte chunk is over the chunk limit');
    assert.ok(!all.some((f) => f.frame?.$case === 'settings'), 'no Settings without negotiation');
    // A proper revision-zero stream: chunks of 16 KiB, no window updates back.
    const payload = Buffer.alloc(70000, 2);
    peer.send(c2s.newStream(1, '/test.Echo/Unary', 0, 0));
    peer.send(c2s.message(1, payload.length, payload.subarray(0, 16384)));
    for (let off = 16384; off < payload.length; off += 16384)
      peer.send(c2s.more(1, payload.subarray(off, off + 16384)));
    peer.send(c2s.halfClose(1));
    const r = await closeOf(peer, 1);
    assert.equal(r.status, undefined);
    assert.ok(!r.frames.some((f) => f.frame?.$case === 'windowUpdate'), 'no window updates in revision zero');
    assert.deepEqual(msgOf(peer, r.frames)[0], payload);
    peer.close();
  });

  it('closes only the stream for unknown methods, bad names and unsupported revisions', async () => {
    const peer = rawClient(address);
    await peer.frames.next(); // settings
    peer.send(c2s.newStream(1, '/test.Echo/Nope'));
    let r = await closeOf(peer, 1);
    assert.equal(r.status?.code, status.UNIMPLEMENTED);
    assert.equal(r.status?.message, 'test.Echo/Nope not implemented');
    assert.deepEqual(
      r.frames.map((f) => f.frame?.$case),
      ['closeStream'],
      'no headers for a refused stream',
    );
    peer.send(c2s.newStream(2, 'no-slash'));
    r = await closeOf(peer, 2);
    assert.equal(r.status?.code, status.INVALID_ARGUMENT);
    peer.send(c2s.newStream(3, '/test.Echo/Unary', 7));
    r = await closeOf(peer, 3);
    assert.equal(r.status?.code, status.UNAVAILABLE);
    // Frames that trail a closed stream are ignored; the tunnel goes on.
    peer.send(c2s.message(1, 1, Buffer.from('x')));
    sendUnary(peer, 4, Buffer.from('ok'));
    r = await closeOf(peer, 4);
    assert.equal(r.status, undefined);
    peer.close();
  });

  const streamErrors: Array<[string, (send: (f: ReturnType<typeof c2s.halfClose>) => void) => void, number, RegExp]> = [
    [
      'a chunk over 16 KiB',
      (send) => send(c2s.message(1, 20000, Buffer.alloc(16385))),
      status.INVALID_ARGUMENT,
      /exceeds the 16384-byte limit/,
    ],
    [
      'data beyond the window',
      (send) => {
        send(c2s.message(1, 100000, Buffer.alloc(16384)));
        for (let i = 0; i < 4; i++) send(c2s.more(1, Buffer.alloc(16384)));
      },
      status.RESOURCE_EXHAUSTED,
      /flow control window exceeded/,
    ],
    [
      'data without an envelope',
      (send) => send(c2s.more(1, Buffer.alloc(10))),
      status.INVALID_ARGUMENT,
      /without a message envelope/,
    ],
    [
      'more data than announced',
      (send) => {
        send(c2s.message(1, 10, Buffer.alloc(5)));
        send(c2s.more(1, Buffer.alloc(6)));
      },
      status.INVALID_ARGUMENT,
      /exceeds its announced size/,
    ],
    [
      'a second request on a unary method',
      (send) => {
        send(c2s.message(1, 1, Buffer.from('a')));
        send(c2s.message(1, 1, Buffer.from('b')));
      },
      status.INVALID_ARGUMENT,
      /second request message/,
    ],
    [
      'a message over the size limit',
      (send) => send(c2s.message(1, 5 * 1024 * 1024, Buffer.alloc(10))),
      status.RESOURCE_EXHAUSTED,
      /larger than max/,
    ],
  ];
  for (const [name, misbehave, code, message] of streamErrors) {
    it(`fails only that stream on ${name}`, async () => {
      const peer = rawClient(address);
      await peer.frames.next(); // settings
      // A healthy stream opened first and completed after the bad one.
      peer.send(c2s.newStream(0, '/test.Echo/ClientStream'));
      peer.send(c2s.message(0, 3, Buffer.from('abc')));
      peer.send(c2s.newStream(1, name.includes('window') ? '/test.Echo/Stall' : '/test.Echo/Unary'));
      misbehave((f) => peer.send(f));
      const bad = await closeOf(peer, 1);
      assert.equal(bad.status?.code, code);
      assert.match(bad.status?.message ?? '', message);
      peer.send(c2s.halfClose(0));
      const good = await closeOf(peer, 0);
      assert.equal(good.status, undefined);
      sendUnary(peer, 2, Buffer.from('still fine'));
      const later = await closeOf(peer, 2);
      assert.equal(later.status, undefined);
      peer.close();
    });
  }

  it('limits concurrent streams per tunnel with RESOURCE_EXHAUSTED for the extra one', async () => {
    const peer = rawClient(address);
    await peer.frames.next();
    for (let id = 1; id <= 3; id++) peer.send(c2s.newStream(id, '/test.Echo/Bidi'));
    peer.send(c2s.newStream(4, '/test.Echo/Bidi'));
    const r = await closeOf(peer, 4);
    assert.equal(r.status?.code, status.RESOURCE_EXHAUSTED);
    peer.send(c2s.halfClose(1));
    assert.equal((await closeOf(peer, 1)).status, undefined);
    peer.close();
  });

  const fatal: Array<[string, (peer: ReturnType<typeof rawClient>) => void, RegExp]> = [
    [
      'a reused stream id',
      (peer) => {
        sendUnary(peer, 5, Buffer.from('a'));
        peer.send(c2s.newStream(5, '/test.Echo/Unary'));
      },
      /cannot create stream ID 5: that ID has already been used/,
    ],
    [
      'a decreasing stream id',
      (peer) => {
        peer.send(c2s.newStream(5, '/test.Echo/Bidi'));
        peer.send(c2s.newStream(3, '/test.Echo/Unary'));
      },
      /cannot create stream ID 3/,
    ],
    [
      'a frame for a stream never created',
      (peer) => peer.send(c2s.halfClose(9)),
      /stream ID 9, which was never created/,
    ],
  ];
  for (const [name, misbehave, message] of fatal) {
    it(`aborts the tunnel on ${name}, and other tunnels keep working`, async () => {
      const bystander = new EchoClient(address, credentials.createInsecure());
      const tunnel = await openTunnel(bystander);
      const echo = new EchoClient('t', credentials.createInsecure(), { channelOverride: tunnel });
      const peer = rawClient(address);
      await peer.frames.next();
      misbehave(peer);
      const st = await peer.status;
      assert.equal(st.code, status.INTERNAL);
      assert.match(st.details, message);
      const r = await unary(echo, Buffer.from('fine'));
      assert.equal(r.error, null);
      tunnel.close();
      bystander.close();
      peer.close();
    });
  }
});

describe('tunnel client protocol', () => {
  it('falls back to revision zero when the server does not negotiate', async () => {
    const seenFrames: unknown[] = [];
    const { server, address } = await startServer((s) =>
      s.addService(
        RawTunnelServiceDefinition,
        rawTunnelService(async (t) => {
          t.call.sendMetadata(new (await import('@grpc/grpc-js')).Metadata()); // headers without the negotiate flag
          const open = await t.frames.next();
          seenFrames.push(open);
          const msg = await t.frames.next();
          seenFrames.push(msg);
          const id = open!.streamId;
          t.send({ streamId: id, frame: { $case: 'responseHeaders', value: { md: {} } } });
          const data = msg!.frame?.$case === 'requestMessage' ? msg!.frame.value.data : new Uint8Array();
          t.send({ streamId: id, frame: { $case: 'responseMessage', value: { size: data.length, data } } });
          t.send({
            streamId: id,
            frame: { $case: 'closeStream', value: { responseTrailers: { md: {} }, status: undefined } },
          });
        }),
      ),
    );
    const connection = new EchoClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    assert.equal(tunnel.protocolRevision, 0);
    const echo = new EchoClient('t', credentials.createInsecure(), { channelOverride: tunnel });
    const r = await unary(echo, Buffer.from('zero'));
    assert.equal(r.error, null);
    assert.deepEqual(r.value, Buffer.from('zero'));
    const open = seenFrames[0] as {
      streamId: number;
      frame: { value: { protocolRevision: number; initialWindowSize: number } };
    };
    assert.equal(open.streamId, 1, 'our client numbers streams from 1, as the Go client does');
    assert.equal(open.frame.value.protocolRevision, 0);
    assert.equal(open.frame.value.initialWindowSize, 0);
    tunnel.close();
    connection.close();
    await stopServer(server);
  });
});
