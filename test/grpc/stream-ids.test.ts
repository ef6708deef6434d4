// Stream ids are int64 on the wire, and the Go reference serves every one of
// them. A tunnel server must take ids past 2^53 exactly: order them, refuse
// reuse, and echo them in its replies, and must treat negative ids and id 0
// as the Go reference does. Each case ends with a normal call on the same
// tunnel (or, after a fatal error, on another tunnel).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata, type Server, status } from '@grpc/grpc-js';
import { openTunnel, TunnelServiceHandler } from 'grpctunnel';
import type { ServerFrame } from '#grpctunnel/engine/frames.js';
import type { StreamId } from '#grpctunnel/engine/stream-id.js';
import { unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import {
  c2s,
  closeOf,
  type RawClient,
  type RawServerTunnel,
  RawTunnelServiceDefinition,
  rawClient64,
  rawTunnelService,
  sendUnary,
} from '../helpers/raw-peer.js';
import { startServer, stopServer } from '../helpers/servers.js';

const TWO_53 = 2n ** 53n;
const MAX_INT64 = 2n ** 63n - 1n;

async function peerOn(address: string): Promise<RawClient<ServerFrame>> {
  const peer = rawClient64(address);
  const settings = await peer.frames.next();
  assert.equal(settings?.frame?.$case, 'settings');
  return peer;
}

/** Runs a unary echo on `id` and checks the reply, every frame of it carrying exactly `id`. */
async function echoOn(peer: RawClient<ServerFrame>, id: StreamId, payload = Buffer.from(`id ${id}`)) {
  peer.send(c2s.newStream(id, '/test.Echo/Unary'));
  // Room for the whole response, past the 64 KiB the stream opens with.
  peer.send(c2s.window(id, payload.length));
  peer.send(c2s.message(id, payload.length, payload.subarray(0, 16384)));
  for (let at = 16384; at < payload.length; at += 16384) peer.send(c2s.more(id, payload.subarray(at, at + 16384)));
  peer.send(c2s.halfClose(id));
  const r = await closeOf(peer, id);
  assert.equal(r.status, undefined, `stream ${id} succeeds`);
  const parts: Buffer[] = [];
  for (const f of r.frames) {
    assert.equal(f.streamId, id, 'the reply carries the exact id');
    if (f.frame?.$case === 'responseMessage') parts.push(Buffer.from(f.frame.value.data));
    if (f.frame?.$case === 'moreResponseData') parts.push(Buffer.from(f.frame.value));
  }
  assert.deepEqual(Buffer.concat(parts), payload, `stream ${id} echoes its request`);
  return r;
}

describe('64-bit stream ids on the tunnel server', () => {
  let server: Server;
  let address: string;
  before(async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    ({ server, address } = await startServer((s) => handler.register(s)));
  });
  after(() => stopServer(server));

  it('serves ids past 2^53 up to 2^63-1 exactly, in order, echoing each id', async () => {
    const peer = await peerOn(address);
    try {
      await echoOn(peer, 1);
      // 2^53 and 2^53+1 are one double apart from nothing: as numbers the
      // second would look reused.
      await echoOn(peer, TWO_53);
      await echoOn(peer, TWO_53 + 1n);
      peer.send(c2s.newStream(MAX_INT64 - 2n, '/test.Echo/Bidi'));
      await echoOn(peer, MAX_INT64 - 1n, Buffer.alloc(70_000, 9));
      // Flow control on the largest id, both ways: the server credits the
      // request data it consumed, and waits for our credit to send more than
      // the 1000-byte window this stream opens with.
      const id = MAX_INT64;
      const payload = Buffer.alloc(60_000, 5);
      peer.send(c2s.newStream(id, '/test.Echo/Bidi', 1, 1000));
      peer.send(c2s.message(id, payload.length, payload.subarray(0, 16384)));
      for (let at = 16384; at < payload.length; at += 16384) peer.send(c2s.more(id, payload.subarray(at, at + 16384)));
      const credited = await peer.frames.until((f) => f.frame?.$case === 'windowUpdate');
      assert.equal(credited[credited.length - 1]?.streamId, id, 'the window update names the exact id');
      const first = await peer.frames.until((f) => f.frame?.$case === 'responseMessage');
      const start = first[first.length - 1];
      assert.ok(start?.frame?.$case === 'responseMessage' && start.streamId === id);
      assert.equal(start.frame.value.data.length, 1000, 'no more than the stream window');
      peer.send(c2s.window(id, payload.length));
      peer.send(c2s.halfClose(id));
      const rest = await closeOf(peer, id);
      let received = start.frame.value.data.length;
      for (const f of rest.frames) if (f.frame?.$case === 'moreResponseData') received += f.frame.value.length;
      assert.equal(received, payload.length, 'the rest follows our window update');
      // No id is left above 2^63-1, so a stream opened earlier proves the tunnel still serves.
      const ping = Buffer.from('still here');
      peer.send(c2s.message(MAX_INT64 - 2n, ping.length, ping));
      peer.send(c2s.halfClose(MAX_INT64 - 2n));
      const last = await closeOf(peer, MAX_INT64 - 2n);
      assert.equal(last.status, undefined);
      const echoed = last.frames.find((f) => f.frame?.$case === 'responseMessage');
      assert.ok(echoed?.frame?.$case === 'responseMessage');
      assert.deepEqual(Buffer.from(echoed.frame.value.data), ping);
    } finally {
      peer.close();
    }
  });

  it('ends the tunnel on a reused id past 2^53, naming it exactly; other tunnels keep working', async () => {
    const peer = await peerOn(address);
    await echoOn(peer, TWO_53 + 1n);
    peer.send(c2s.newStream(TWO_53, '/test.Echo/Unary'));
    const st = await peer.status;
    assert.equal(st.code, status.INTERNAL);
    assert.match(st.details, /cannot create stream ID 9007199254740992: that ID has already been used/);
    peer.close();
    const other = await peerOn(address);
    await echoOn(other, MAX_INT64);
    other.close();
  });

  it('takes id 0 as a first stream, as the Go reference does', async () => {
    const peer = await peerOn(address);
    try {
      await echoOn(peer, 0);
      await echoOn(peer, 1);
    } finally {
      peer.close();
    }
  });

  it('drops frames for negative ids (never above the last id) and keeps serving', async () => {
    const peer = await peerOn(address);
    try {
      await echoOn(peer, 3);
      peer.send(c2s.window(-5, 100));
      peer.send(c2s.cancel(-(2n ** 63n)));
      peer.send(c2s.halfClose(-1));
      await echoOn(peer, 4);
    } finally {
      peer.close();
    }
  });

  it('ends the tunnel on a new_stream with a negative id, as the Go reference does', async () => {
    const peer = await peerOn(address);
    peer.send(c2s.newStream(-(2n ** 62n), '/test.Echo/Unary'));
    const st = await peer.status;
    assert.equal(st.code, status.INTERNAL);
    assert.match(st.details, /cannot create stream ID -4611686018427387904: that ID has already been used/);
    peer.close();
    const other = await peerOn(address);
    sendUnary(other, 1, Buffer.from('fine'));
    assert.equal((await closeOf(other, 1)).status, undefined);
    other.close();
  });
});

/**
 * A scripted tunnel server: negotiates, echoes each stream's request once it
 * half-closes, and calls `beforeAnswer` first so a test can slip in frames.
 */
function scriptedServer(beforeAnswer: (t: RawServerTunnel, answered: number) => void) {
  return rawTunnelService((t) => {
    const reply = new Metadata();
    reply.set('grpctunnel-negotiate', 'on');
    t.call.sendMetadata(reply);
    t.send({
      streamId: -1,
      frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
    });
    void (async () => {
      const requests = new Map<StreamId, Uint8Array>();
      let answered = 0;
      for (;;) {
        const f = await t.frames.next(10_000).catch(() => undefined);
        if (!f) return;
        if (f.frame?.$case === 'requestMessage') requests.set(f.streamId, f.frame.value.data);
        if (f.frame?.$case !== 'halfClose') continue;
        beforeAnswer(t, answered++);
        const data = requests.get(f.streamId) ?? new Uint8Array();
        t.send({ streamId: f.streamId, frame: { $case: 'responseHeaders', value: { md: {} } } });
        t.send({ streamId: f.streamId, frame: { $case: 'responseMessage', value: { size: data.length, data } } });
        t.send({
          streamId: f.streamId,
          frame: { $case: 'closeStream', value: { responseTrailers: { md: {} }, status: undefined } },
        });
      }
    })();
  });
}

async function clientAgainst(script: ReturnType<typeof scriptedServer>) {
  const { server, address } = await startServer((s) => s.addService(RawTunnelServiceDefinition, script));
  const connection = new EchoClient(address, credentials.createInsecure());
  const tunnel = await openTunnel(connection);
  const echo = new EchoClient('t', credentials.createInsecure(), { channelOverride: tunnel });
  return {
    tunnel,
    echo,
    async close() {
      tunnel.close();
      echo.close();
      connection.close();
      await stopServer(server);
    },
  };
}

describe('64-bit stream ids on the tunnel client', () => {
  it('drops frames for negative ids once a stream was opened, as the Go client does', async () => {
    const c = await clientAgainst(
      scriptedServer((t, answered) => {
        if (answered !== 1) return;
        t.send({ streamId: -7, frame: { $case: 'windowUpdate', value: 100 } });
        t.send({ streamId: -(2n ** 63n), frame: { $case: 'responseHeaders', value: { md: {} } } });
      }),
    );
    try {
      for (const text of ['one', 'two', 'three']) {
        const r = await unary(c.echo, Buffer.from(text));
        assert.equal(r.error, null, `call ${text}`);
        assert.deepEqual(r.value, Buffer.from(text));
      }
    } finally {
      await c.close();
    }
  });

  it('ends the tunnel, naming the exact id, on a frame for an id past 2^53 it never opened', async () => {
    const c = await clientAgainst(
      scriptedServer((t) => t.send({ streamId: MAX_INT64, frame: { $case: 'windowUpdate', value: 1 } })),
    );
    try {
      const r = await unary(c.echo, Buffer.from('x'));
      assert.equal(r.error?.code, status.INTERNAL);
      const ended = await c.tunnel.closed;
      assert.match(String(ended?.message), /stream 9223372036854775807, which was never created/);
    } finally {
      await c.close();
    }
  });
});
