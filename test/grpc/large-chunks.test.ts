// The large-chunk extension between two peers of this library: each side
// offers the largest chunk it accepts in a tunnel RPC header, and only when
// both did do chunks go past the protocol's 16 KiB. A peer that offers
// nothing (the Go reference) keeps exactly the protocol's chunks; the
// transcript and wire tests check that against recorded Go frames.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { credentials, InterceptingCall, type Interceptor, type Metadata, status } from '@grpc/grpc-js';
import { openTunnel, TunnelServiceHandler } from 'grpctunnel';
import { CHUNK_SIZE_HEADER } from '#grpctunnel/engine/constants.js';
import { negotiateChunkSize } from '#grpctunnel/engine/negotiation.js';
import { clientStream, collect, serverStream, unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { c2s, closeOf, rawClient } from '../helpers/raw-peer.js';
import { forwardFixture, reverseFixture, startServer, stopAllServers } from '../helpers/servers.js';

const MIB = 1 << 20;

/** What crossed a tunnel RPC, seen by a client interceptor on the connection that carries it. */
interface Tap {
  interceptor: Interceptor;
  /** Payload sizes of the data frames sent and received on the tunnel RPC. */
  sent: number[];
  received: number[];
  requestHeaders: Metadata[];
  responseHeaders: Metadata[];
}

type Frame = { frame?: { $case: string; value: unknown } | undefined };

function dataSize(f: Frame): number | undefined {
  switch (f.frame?.$case) {
    case 'requestMessage':
    case 'responseMessage':
      return (f.frame.value as { data: Uint8Array }).data.length;
    case 'moreRequestData':
    case 'moreResponseData':
      return (f.frame.value as Uint8Array).length;
    default:
      return undefined;
  }
}

function tap(): Tap {
  const t: Tap = { sent: [], received: [], requestHeaders: [], responseHeaders: [], interceptor: undefined as never };
  t.interceptor = (options, next) =>
    new InterceptingCall(next(options), {
      start(metadata, _listener, nextStart) {
        t.requestHeaders.push(metadata.clone());
        nextStart(metadata, {
          onReceiveMetadata(md, nextMd) {
            t.responseHeaders.push(md.clone());
            nextMd(md);
          },
          onReceiveMessage(message: Frame, nextMessage) {
            const n = dataSize(message);
            if (n !== undefined) t.received.push(n);
            nextMessage(message);
          },
        });
      },
      sendMessage(message: Frame, nextSend) {
        const n = dataSize(message);
        if (n !== undefined) t.sent.push(n);
        nextSend(message);
      },
    });
  return t;
}

const max = (sizes: number[]) => Math.max(0, ...sizes);

/** A client-streaming call's error (null on success). */
async function clientStreamOf(client: EchoClient, messages: Buffer[]) {
  return (await clientStream(client, messages)).error;
}

describe('large chunks between peers of this library', () => {
  afterEach(stopAllServers);

  it('parses the offer strictly and agrees on the smaller size', () => {
    assert.equal(negotiateChunkSize(MIB, '65536'), 65536);
    assert.equal(negotiateChunkSize(65536, String(MIB)), 65536);
    assert.equal(negotiateChunkSize(MIB, String(64 * MIB)), MIB);
    for (const offer of [undefined, '', '16384', '100', '-65536', '65536 ', '0x10000', '1e6', '99999999999']) {
      assert.equal(negotiateChunkSize(MIB, offer), undefined, `offer ${offer}`);
    }
    assert.equal(negotiateChunkSize(16384, String(MIB)), undefined, 'off on this side');
  });

  it('a forward tunnel carries a 1 MiB message in chunks larger than 16 KiB, both ways', async () => {
    const t = tap();
    const f = await forwardFixture({}, {}, { interceptors: [t.interceptor] });
    try {
      const payload = Buffer.alloc(MIB, 7);
      const r = await unary(f.echo, payload);
      assert.equal(r.error, null);
      assert.ok(r.value?.equals(payload));
      assert.equal(t.requestHeaders[0]?.get(CHUNK_SIZE_HEADER)[0], String(MIB));
      assert.equal(t.responseHeaders[0]?.get(CHUNK_SIZE_HEADER)[0], String(MIB));
      assert.ok(max(t.sent) > 16384, `request chunks ${t.sent}`);
      assert.ok(max(t.received) > 16384, `response chunks ${t.received}`);
      assert.ok(t.received.length < MIB / 16384, `${t.received.length} response frames`);
    } finally {
      await f.close();
    }
  });

  it('a reverse tunnel does the same', async () => {
    const t = tap();
    const f = await reverseFixture({}, {}, {}, 1, { interceptors: [t.interceptor] });
    try {
      const messages = await collect(serverStream(f.echo, 2, MIB));
      assert.equal(messages.error, null);
      assert.equal(messages.messages.length, 2);
      assert.ok(max(t.sent) > 16384, `response chunks ${t.sent}`);
    } finally {
      await f.close();
    }
  });

  for (const side of ['client', 'server'] as const) {
    it(`maxChunkSize 16384 on the ${side} side keeps the protocol's chunks`, async () => {
      const t = tap();
      const off = { maxChunkSize: 16384 };
      const f = await forwardFixture(side === 'server' ? off : {}, side === 'client' ? off : {}, {
        interceptors: [t.interceptor],
      });
      try {
        const payload = Buffer.alloc(MIB, 7);
        const r = await unary(f.echo, payload);
        assert.equal(r.error, null);
        assert.ok(r.value?.equals(payload));
        const headers = side === 'client' ? t.requestHeaders[0] : t.responseHeaders[0];
        assert.deepEqual(headers?.get(CHUNK_SIZE_HEADER), [], 'nothing offered by the side that turned it off');
        assert.ok(max(t.sent) <= 16384 && max(t.received) <= 16384, `chunks ${max(t.sent)} / ${max(t.received)}`);
      } finally {
        await f.close();
      }
    });
  }

  it('keeps the offer out of the tunnel metadata users see', async () => {
    const seen: Array<string[]> = [];
    const f = await reverseFixture({
      affinityKey: (info) => {
        seen.push(info.metadata.get(CHUNK_SIZE_HEADER) as string[]);
        return 'k';
      },
    });
    try {
      const r = await unary(f.echo, Buffer.alloc(100_000, 1));
      assert.equal(r.error, null);
      assert.deepEqual(seen, [[]]);
      const tunnel = f.handler.allReverseTunnels()[0];
      assert.deepEqual(tunnel?.info.metadata.get(CHUNK_SIZE_HEADER), []);
    } finally {
      await f.close();
    }
  });

  it('holds a raw peer to the size it offered', async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const { address } = await startServer((s) => handler.register(s));
    const peer = rawClient(address, true, { [CHUNK_SIZE_HEADER]: '32768' });
    try {
      assert.equal((await peer.headers).get(CHUNK_SIZE_HEADER)[0], String(MIB));
      await peer.frames.next(); // settings
      const payload = Buffer.alloc(60000, 3);
      peer.send(c2s.newStream(1, '/test.Echo/Unary', 1, 1 << 20));
      peer.send(c2s.message(1, payload.length, payload.subarray(0, 32768)));
      peer.send(c2s.more(1, payload.subarray(32768)));
      peer.send(c2s.halfClose(1));
      const ok = await closeOf(peer, 1);
      assert.equal(ok.status, undefined);
      const chunks = ok.frames.map(dataSize).filter((n): n is number => n !== undefined);
      assert.deepEqual(chunks, [32768, 60000 - 32768], 'answered in chunks of the size it offered');
      peer.send(c2s.newStream(2, '/test.Echo/Unary'));
      peer.send(c2s.message(2, 40000, Buffer.alloc(32769)));
      const refused = await closeOf(peer, 2);
      assert.equal(refused.status?.code, status.INVALID_ARGUMENT);
      assert.match(refused.status?.message ?? '', /exceeds the 32768-byte limit/);
    } finally {
      peer.close();
    }
  });

  it('offers no more than the connection’s grpc-js accepts in one message', async () => {
    const limit = { 'grpc.max_receive_message_length': 100_000 };
    // Client side: the connection's channel option. Windows grow past the
    // limit while 4 MiB stream, so larger offers would end the tunnel RPC.
    const t = tap();
    const f = await forwardFixture({}, {}, { interceptors: [t.interceptor], ...limit });
    try {
      assert.equal(t.requestHeaders[0]?.get(CHUNK_SIZE_HEADER)[0], String(100_000 - 64));
      const streamed = await collect(serverStream(f.echo, 4, MIB));
      assert.equal(streamed.error, null);
      assert.equal(streamed.messages.length, 4);
      assert.ok(max(t.received) > 16384 && max(t.received) <= 100_000 - 64, `response chunks up to ${max(t.received)}`);
    } finally {
      await f.close();
    }
    // Server side: the grpc-js Server's option, read from the tunnel RPC's call.
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const { address } = await startServer((s) => handler.register(s), { serverOptions: limit });
    const connection = new EchoClient(address, credentials.createInsecure());
    const s = tap();
    const withTap = new EchoClient(address, credentials.createInsecure(), { interceptors: [s.interceptor] });
    try {
      const tunnel = await openTunnel(withTap);
      const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
      assert.equal(s.responseHeaders[0]?.get(CHUNK_SIZE_HEADER)[0], String(100_000 - 64));
      const sent = await clientStreamOf(echo, [Buffer.alloc(MIB, 1), Buffer.alloc(MIB, 2), Buffer.alloc(MIB, 3)]);
      assert.equal(sent, null);
      assert.ok(max(s.sent) > 16384 && max(s.sent) <= 100_000 - 64, `request chunks up to ${max(s.sent)}`);
      tunnel.close();
    } finally {
      connection.close();
      withTap.close();
    }
  });

  it('refuses sizes outside 16384 to 4 MiB - 4 KiB', async () => {
    for (const maxChunkSize of [16383, 4 * MIB, 1.5]) {
      assert.throws(() => new TunnelServiceHandler({ maxChunkSize }), RangeError, String(maxChunkSize));
      const connection = new EchoClient('127.0.0.1:1', credentials.createInsecure());
      await assert.rejects(openTunnel(connection, { maxChunkSize }), RangeError);
      connection.close();
    }
  });
});
