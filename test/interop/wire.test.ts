// Wire details a Go peer depends on, checked on real tunnels with a tap: a
// grpc-js client interceptor on the connection that carries the tunnel RPC
// records every frame in both directions, in order.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  credentials,
  InterceptingCall,
  type Interceptor,
  type Metadata,
  ServerInterceptingCall,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { DEFAULT_EXTENDED_CHUNK_SIZE, DEFAULT_WINDOW_SIZE } from '#grpctunnel/engine/constants.js';
import { DEFAULT_MAX_WINDOW_SIZE } from '#grpctunnel/engine/receive-window.js';
import type { ClientToServer, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import {
  encodeClientToServer,
  encodeServerToClient,
  OPEN_REVERSE_TUNNEL_PATH,
  OPEN_TUNNEL_PATH,
} from '#grpctunnel/grpc/tunnel-service.js';
import { clientStream, collect, serverStream, unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { forwardFixture, reverseFixture, startServer, stopAllServers } from '../helpers/servers.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

type Frame = ClientToServer | ServerToClient;
interface Tapped {
  /** Frames in the order this side sent or received them. */
  timeline: Array<{ dir: 'out' | 'in'; frame: Frame }>;
  /** Response headers of the tunnel RPC, and how many frames had arrived before them. */
  headers?: { metadata: Metadata; framesBefore: number };
}

function tap(): { tapped: Tapped; interceptor: Interceptor } {
  const tapped: Tapped = { timeline: [] };
  const interceptor: Interceptor = (options, next) =>
    new InterceptingCall(next(options), {
      start: (metadata, _listener, start) =>
        start(metadata, {
          onReceiveMetadata: (md, nextMd) => {
            const framesBefore = tapped.timeline.filter((e) => e.dir === 'in').length;
            tapped.headers = { metadata: md, framesBefore };
            nextMd(md);
          },
          onReceiveMessage: (message, nextMessage) => {
            tapped.timeline.push({ dir: 'in', frame: message as Frame });
            nextMessage(message);
          },
        }),
      sendMessage: (message, nextSend) => {
        tapped.timeline.push({ dir: 'out', frame: message as Frame });
        nextSend(message);
      },
    });
  return { tapped, interceptor };
}

/** Every call kind, with message sizes around the chunk size and past the window. */
async function workload(echo: EchoClient): Promise<void> {
  for (const size of [0, 1, 16384, 16385, 200_000]) {
    const r = await unary(echo, Buffer.alloc(size, 3));
    assert.equal(r.error, null);
  }
  assert.equal((await clientStream(echo, [Buffer.alloc(70_000), Buffer.alloc(5)])).error, null);
  assert.equal((await collect(serverStream(echo, 10, 30_000))).messages.length, 10);
  const bidi = echo.bidi();
  const done = collect(bidi);
  for (let i = 0; i < 5; i++) bidi.write(Buffer.alloc(40_000, i));
  bidi.end();
  assert.equal((await done).messages.length, 5);
}

const dataBytes = (f: Frame): number => {
  switch (f.frame?.$case) {
    case 'requestMessage':
    case 'responseMessage':
      return f.frame.value.data.length;
    case 'moreRequestData':
    case 'moreResponseData':
      return f.frame.value.length;
    default:
      return 0;
  }
};

/** The bytes of a data frame as a gRPC message: the encoded frame and the 5-byte message prefix. */
const grpcMessageSize = (f: Frame): number =>
  5 +
  (f.frame?.$case === 'requestMessage' || f.frame?.$case === 'moreRequestData'
    ? encodeClientToServer(f as ClientToServer).length
    : encodeServerToClient(f as ServerToClient).length);

/** Checks chunk sizes, window-update bounds and stream ids of a tapped tunnel. */
function checkInvariants(t: Tapped, openerDir: 'out' | 'in', maxChunk = DEFAULT_EXTENDED_CHUNK_SIZE): void {
  const received = new Map<number, number>();
  const credited = new Map<number, number>();
  let lastId = 0;
  for (const { dir, frame } of t.timeline) {
    const n = dataBytes(frame);
    assert.ok(n <= maxChunk, `a chunk of ${n} bytes`);
    // Both ends here are ours: with the protocol's chunks, each data frame
    // fits one default-sized HTTP/2 DATA frame, so grpc-js neither splits it
    // nor copies it back together. (Larger chunks, agreed between two peers
    // of this library, span several: large-chunks.test.ts.)
    if (n > 0 && maxChunk <= 16384)
      assert.ok(grpcMessageSize(frame) <= 16384, `a ${n}-byte chunk makes a ${grpcMessageSize(frame)}-byte message`);
    if (dir === 'in') received.set(frame.streamId, (received.get(frame.streamId) ?? 0) + n);
    if (dir === 'out' && frame.frame?.$case === 'windowUpdate') {
      const total = (credited.get(frame.streamId) ?? 0) + frame.frame.value;
      credited.set(frame.streamId, total);
      const got = received.get(frame.streamId) ?? 0;
      // Credit beyond what was received is window growth: the window the
      // peer holds never exceeds the largest a stream may grow to.
      const window = DEFAULT_WINDOW_SIZE + total - got;
      assert.ok(
        window <= DEFAULT_MAX_WINDOW_SIZE,
        `stream ${frame.streamId}: credited ${total} of ${got} bytes received (window ${window})`,
      );
    }
    if (dir === openerDir && frame.frame?.$case === 'newStream') {
      assert.ok(frame.streamId > lastId, `stream id ${frame.streamId} after ${lastId}`);
      if (lastId === 0) assert.equal(frame.streamId, 1, 'the first stream id is 1, as the Go client uses');
      lastId = frame.streamId;
    }
  }
  assert.equal(lastId, 8, 'each of the eight calls opened one stream');
  assert.ok(credited.size > 0, 'window updates were sent');
}

describe('wire details, forward tunnel', () => {
  for (const flowControl of [true, false]) {
    it(`Settings first, negotiate header at once, ids, chunks and credit (handler flow control ${flowControl})`, async () => {
      const { tapped, interceptor } = tap();
      const f = await forwardFixture({ flowControl }, {}, { interceptors: [interceptor] });
      await workload(f.echo);
      assert.equal(tapped.headers?.metadata.get('grpctunnel-negotiate')[0], 'on');
      assert.equal(tapped.headers?.framesBefore, 0, 'response headers come before any frame');
      const first = tapped.timeline.find((e) => e.dir === 'in')?.frame;
      assert.deepEqual(first, {
        streamId: -1,
        frame: {
          $case: 'settings',
          value: { supportedProtocolRevisions: flowControl ? [0, 1] : [0], initialWindowSize: 65536 },
        },
      });
      if (flowControl) checkInvariants(tapped, 'out');
      else {
        assert.ok(!tapped.timeline.some((e) => e.frame.frame?.$case === 'windowUpdate'), 'revision zero: no updates');
        const opened = tapped.timeline.filter((e) => e.frame.frame?.$case === 'newStream');
        assert.ok(
          opened.every((e) => e.frame.frame?.$case === 'newStream' && e.frame.frame.value.protocolRevision === 0),
        );
      }
      await f.close();
    });
  }
});

/**
 * A tap at the server, for a client whose tunnel RPC no grpc-js client
 * interceptor can see (a TunnelConnection): it records the tunnel RPC's
 * (`path`) frames as the client sent and received them ('out': what the client sent).
 */
function serverTap(path = OPEN_TUNNEL_PATH): { tapped: Tapped; interceptor: ServerInterceptor } {
  const tapped: Tapped = { timeline: [] };
  const interceptor: ServerInterceptor = (method, call) => {
    const tunnelRpc = method.path === path;
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message, nextMessage) => {
            if (tunnelRpc) tapped.timeline.push({ dir: 'out', frame: message as Frame });
            nextMessage(message);
          },
        }),
      sendMessage: (message, nextSend) => {
        if (tunnelRpc) tapped.timeline.push({ dir: 'in', frame: message as Frame });
        nextSend(message);
      },
    });
  };
  return { tapped, interceptor };
}

describe('wire details, forward tunnel on a TunnelConnection (tapped at the server)', () => {
  it('ids from 1, chunks and credit, as over grpc-js', async () => {
    const { tapped, interceptor } = serverTap();
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const { address } = await startServer((s) => handler.register(s), {
      serverOptions: { interceptors: [interceptor] },
    });
    const connection = new TunnelConnection(address);
    const tunnel = await openTunnel(connection);
    const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
    await workload(echo);
    const first = tapped.timeline.find((e) => e.dir === 'in')?.frame;
    assert.equal(first?.frame?.$case, 'settings', 'the server spoke first, with Settings');
    checkInvariants(tapped, 'out');
    tunnel.close();
    await tunnel.closed;
    echo.close();
    connection.close();
  });
});

describe('wire details, forward tunnel with the protocol’s chunks', () => {
  it('maxChunkSize 16384 on both sides: chunks of at most 16 KiB, each in one HTTP/2 DATA frame', async () => {
    const { tapped, interceptor } = tap();
    const off = { maxChunkSize: 16384 };
    const f = await forwardFixture(off, off, { interceptors: [interceptor] });
    await workload(f.echo);
    checkInvariants(tapped, 'out', 16384);
    await f.close();
  });
});

describe('wire details, reverse tunnel', () => {
  it('the reverse tunnel server sends Settings first; the handler opens ids from 1; chunks and credit', async () => {
    const { tapped, interceptor } = tap();
    const f = await reverseFixture({}, {}, {}, 1, { interceptors: [interceptor] });
    await workload(f.echo);
    assert.equal(tapped.headers?.metadata.get('grpctunnel-negotiate')[0], 'on');
    assert.equal(tapped.headers?.framesBefore, 0);
    const first = tapped.timeline.find((e) => e.dir === 'out')?.frame;
    assert.deepEqual(first, {
      streamId: -1,
      frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
    });
    checkInvariants(tapped, 'in');
    await f.close();
  });
});

describe('wire details, reverse tunnel on a TunnelConnection (tapped at the server)', () => {
  it('the reverse tunnel server sends Settings first; the handler opens ids from 1; chunks and credit', async () => {
    const { tapped, interceptor } = serverTap(OPEN_REVERSE_TUNNEL_PATH);
    const handler = new TunnelServiceHandler();
    const { address } = await startServer((s) => handler.register(s), {
      serverOptions: { interceptors: [interceptor] },
    });
    const connection = new TunnelConnection(address);
    const reverse = new ReverseTunnelServer(connection);
    reverse.addService(EchoService, echoImplementation());
    const opened = new Promise((resolve) => handler.once('reverseTunnelOpen', resolve));
    const serving = reverse.serve();
    await opened;
    const echo = new EchoClient('pool', credentials.createInsecure(), { channelOverride: handler.asChannel() });
    await workload(echo);
    const first = tapped.timeline.find((e) => e.dir === 'out')?.frame;
    assert.deepEqual(first, {
      streamId: -1,
      frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
    });
    checkInvariants(tapped, 'in');
    reverse.stop();
    assert.deepEqual(await serving, { started: true });
    echo.close();
    connection.close();
  });
});
