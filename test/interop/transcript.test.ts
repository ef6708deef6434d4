// Replays test/fixtures/go-transcript.jsonl, frames recorded from the Go
// reference: our codec must produce the recorded bytes, our tunnel server
// must answer the go-server script as the Go server did, and our tunnel
// client must send what the Go client sent to the go-client script. Where
// we differ on purpose, the assertion says so.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import {
  Client,
  type ClientDuplexStream,
  credentials,
  Metadata,
  type ServerDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { DEFAULT_WINDOW_SIZE } from '#grpctunnel/engine/constants.js';
import type { ClientFrame } from '#grpctunnel/engine/frames.js';
import { DEFAULT_MAX_WINDOW_SIZE } from '#grpctunnel/engine/receive-window.js';
import { ClientToServer, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import {
  decodeClientToServer,
  encodeServerToClient,
  OPEN_REVERSE_TUNNEL_PATH,
  TunnelServiceDefinition,
} from '#grpctunnel/grpc/tunnel-service.js';
import { Message, TestServiceClient, TestServiceService } from '../../interop/gen/grpchantesting/test.js';
import { testServiceImplementation } from '../../interop/test-service.js';
import { Changes } from '../helpers/changes.js';
import { startOwnServer } from '../helpers/own-server.js';
import { type RawClient, RawTunnelServiceDefinition, rawClient, rawTunnelService } from '../helpers/raw-peer.js';
import { startServer, stopServer } from '../helpers/servers.js';
import { clientFrame, loadTranscript, serverFrame, type TranscriptLine } from '../helpers/transcript.js';

const transcript = loadTranscript();
const scenario = (name: string) => transcript.filter((l) => l.scenario === name);
const framesOf = (lines: TranscriptLine[], by: 'go' | 'script') => lines.filter((l) => l.frame && l.by === by);

/** What a frame is, for comparing sequences: its kind and, for data, its sizes. */
function kindOf(frame: ClientToServer | ServerToClient): string {
  return frame.frame?.$case ?? 'none';
}

describe('Go transcript: codec', () => {
  it('encodes every recorded frame to exactly the recorded bytes', () => {
    let checked = 0;
    for (const line of transcript) {
      if (!line.frame || !line.hex) continue;
      const bytes =
        line.dir === 'to_server'
          ? ClientToServer.encode(clientFrame(line.frame)).finish()
          : ServerToClient.encode(serverFrame(line.frame)).finish();
      assert.equal(Buffer.from(bytes).toString('hex'), line.hex, `${line.scenario}: ${JSON.stringify(line.frame)}`);
      checked++;
    }
    assert.ok(checked >= 40, `checked ${checked} frames`);
  });
});

/** The handler on a grpc-js Server, or on a node:http2 server of its own (serveHttp2); resolves to its address and a stop. */
const SERVER_KINDS = [
  [
    'grpc-js server',
    async (handler: TunnelServiceHandler) => {
      const { server, address } = await startServer((s) => handler.register(s));
      return { address, stop: () => stopServer(server) };
    },
  ],
  ['own server', (handler: TunnelServiceHandler) => startOwnServer(handler)],
] as const;

for (const [serverKind, startHandlerServer] of SERVER_KINDS)
  describe(`Go transcript: our tunnel server answers the go-server script as the Go server did (${serverKind})`, () => {
    let address: string;
    let stop: () => Promise<void>;
    let peer: RawClient;
    const ours = new Map<number, ServerToClient[]>();
    let ended: Promise<{ code: number; details: string }>;

    before(async () => {
      const handler = new TunnelServiceHandler();
      handler.addService(TestServiceService, testServiceImplementation());
      ({ stop, address } = await startHandlerServer(handler));
      peer = rawClient(address);
      ended = peer.status;
    });
    after(async () => {
      peer.close();
      await stop();
    });

    it('replays the script and matches the Go server frame for frame, per stream', async () => {
      const lines = scenario('go-server');
      const expectedHeaders = lines.find((l) => l.tunnel_response_headers)?.tunnel_response_headers as Record<
        string,
        string[]
      >;
      const headers = await peer.headers;
      assert.deepEqual(headers.get('grpctunnel-negotiate'), expectedHeaders['grpctunnel-negotiate']);

      // Collect everything our server sends.
      const received = new Changes();
      const collect = (async () => {
        for (;;) {
          const f = await peer.frames.next(10_000).catch(() => undefined);
          if (!f) return;
          const list = ours.get(f.streamId) ?? [];
          list.push(f);
          ours.set(f.streamId, list);
          received.notify();
        }
      })();
      const seenKinds = (id: number, kind: string) => (ours.get(id) ?? []).filter((f) => kindOf(f) === kind).length;

      // Play the script in order. Before each script frame, wait until our
      // server has sent (per stream) as many envelopes, headers and closes as
      // the Go server had at that point; chunks and window updates may differ.
      const expectedCount = new Map<string, number>();
      for (const line of lines) {
        if (!line.frame) continue;
        if (line.by === 'go') {
          const f = serverFrame(line.frame);
          const kind = kindOf(f);
          if (kind === 'settings' || kind === 'moreResponseData' || kind === 'windowUpdate') continue;
          const key = `${f.streamId}:${kind}`;
          expectedCount.set(key, (expectedCount.get(key) ?? 0) + 1);
          continue;
        }
        for (const [key, n] of expectedCount) {
          const [id, kind] = key.split(':') as [string, string];
          await received.until(() => seenKinds(Number(id), kind) >= n, `our server's ${kind} #${n} on stream ${id}`);
        }
        peer.send(clientFrame(line.frame));
      }
      const status = await ended;
      await collect;

      // The script ends by reusing stream id 5: the tunnel is aborted with the
      // same message. Deliberate difference: we end it with INTERNAL (a
      // protocol violation), the Go server with UNKNOWN (an untyped error).
      const goEnd = String(lines.find((l) => l.tunnel_ended)?.tunnel_ended);
      assert.match(goEnd, /cannot create stream ID 5: that ID has already been used/);
      assert.match(status.details, /cannot create stream ID 5: that ID has already been used$/);
      assert.equal(status.code, 13);

      const goFrames = framesOf(lines, 'go').map((l) => serverFrame(l.frame as Record<string, unknown>));
      assert.deepEqual(ours.get(-1)?.map(kindOf), ['settings']);
      assert.deepEqual(ours.get(-1)?.[0], goFrames[0], 'Settings: revisions [0, 1], window 65536');
      const scriptFrames = framesOf(lines, 'script').map((l) => clientFrame(l.frame as Record<string, unknown>));
      for (const id of [0, 1, 2, 3, 4, 5]) {
        const received = scriptFrames.filter((f) => f.streamId === id).reduce((n, f) => n + dataBytes(f), 0);
        compareStream(
          id,
          goFrames.filter((f) => f.streamId === id),
          ours.get(id) ?? [],
          received,
        );
      }
    });
  });

/**
 * Compares one stream's frames: the same kinds in the same order once data
 * chunks are merged; equal headers, trailers and statuses; equal message
 * sizes and contents. Window updates are compared by total, since we batch
 * them (the Go server sends one per chunk).
 */
function compareStream(id: number, go: ServerToClient[], ours: ServerToClient[], received: number): void {
  const shape = (frames: ServerToClient[]) =>
    frames.map(kindOf).filter((k, i, all) => k !== 'windowUpdate' && !(k === 'moreResponseData' && all[i - 1] === k));
  const noMore = (frames: ServerToClient[]) => shape(frames).filter((k) => k !== 'moreResponseData');
  assert.deepEqual(noMore(ours), noMore(go), `stream ${id}: frame kinds`);

  const messages = (frames: ServerToClient[]) => {
    const out: Buffer[] = [];
    let size = 0;
    let parts: Buffer[] = [];
    for (const f of frames) {
      if (f.frame?.$case === 'responseMessage') {
        size = f.frame.value.size;
        parts = [Buffer.from(f.frame.value.data)];
      } else if (f.frame?.$case === 'moreResponseData') parts.push(Buffer.from(f.frame.value));
      else continue;
      const whole = Buffer.concat(parts);
      if (whole.length === size) out.push(whole);
    }
    return out;
  };
  const goMessages = messages(go).map((b) => Message.decode(b));
  const ourMessages = messages(ours).map((b) => Message.decode(b));
  assert.equal(ourMessages.length, goMessages.length, `stream ${id}: message count`);
  ourMessages.forEach((m, i) => {
    const g = goMessages[i] as Message;
    assert.deepEqual(Buffer.from(m.payload), Buffer.from(g.payload), `stream ${id}: payload ${i}`);
    assert.equal(m.count, g.count, `stream ${id}: count ${i}`);
    // Deliberate difference: the Go handler sees grpc-timeout among its
    // request metadata and echoes it; a grpc-js handler (ours, as a direct
    // grpc-js server would) sees it as the call's deadline instead.
    const { 'grpc-timeout': goTimeout, ...goHeaders } = g.headers;
    void goTimeout;
    assert.deepEqual(stringMap(m.headers), stringMap(goHeaders), `stream ${id}: echoed request metadata ${i}`);
  });
  for (const f of ours) {
    if (f.frame?.$case === 'moreResponseData' || f.frame?.$case === 'responseMessage') {
      const n = f.frame.$case === 'responseMessage' ? f.frame.value.data.length : f.frame.value.length;
      assert.ok(n <= 16384, `stream ${id}: chunk of ${n} bytes`);
    }
  }
  const pick = (frames: ServerToClient[], kind: 'responseHeaders' | 'closeStream') =>
    frames.find((f) => f.frame?.$case === kind)?.frame?.value;
  assert.deepEqual(pick(ours, 'responseHeaders'), pick(go, 'responseHeaders'), `stream ${id}: response headers`);
  assert.deepEqual(pick(ours, 'closeStream'), pick(go, 'closeStream'), `stream ${id}: close (status, trailers)`);

  const credit = (frames: ServerToClient[]) =>
    frames.reduce((n, f) => n + (f.frame?.$case === 'windowUpdate' ? f.frame.value : 0), 0);
  // Deliberate differences: we batch window updates (one per 16 KiB consumed)
  // where the Go server sends one per chunk, and grow the window of a stream
  // whose reader keeps up (credit beyond the bytes received); the window the
  // peer holds stays within the largest a stream may grow to.
  const window = DEFAULT_WINDOW_SIZE + credit(ours) - received;
  assert.ok(
    window <= DEFAULT_MAX_WINDOW_SIZE,
    `stream ${id}: window credit ${credit(ours)} for the ${received} bytes received (window ${window})`,
  );
}

function dataBytes(f: ClientToServer): number {
  if (f.frame?.$case === 'requestMessage') return f.frame.value.data.length;
  if (f.frame?.$case === 'moreRequestData') return f.frame.value.length;
  return 0;
}

function stringMap(map: Record<string, Buffer | Uint8Array>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k, Buffer.from(v).toString('latin1')]));
}

describe('Go transcript: our tunnel client sends what the Go client sent to the go-client script', () => {
  // The tunnel RPC over a grpc-js client, and on the library's own connection (TunnelConnection).
  for (const [way, dial] of [
    ['grpc-js client', (address: string) => new TestServiceClient(address, credentials.createInsecure())],
    ['own connection', (address: string) => new TunnelConnection(address)],
  ] as const) {
    it(`opens the same streams with the same headers, chunks, half-closes and cancel (${way})`, async () => {
      const lines = scenario('go-client');
      const script = framesOf(lines, 'script').map((l) => serverFrame(l.frame as Record<string, unknown>));
      const goSent = framesOf(lines, 'go').map((l) => clientFrame(l.frame as Record<string, unknown>));
      const sent: ClientToServer[] = [];
      const received = new Changes();
      let tunnelHeaders: Metadata | undefined;

      const { server, address } = await startServer((s) =>
        s.addService(
          RawTunnelServiceDefinition,
          rawTunnelService((t) => {
            tunnelHeaders = t.call.metadata;
            const reply = new Metadata();
            reply.set('grpctunnel-negotiate', 'on');
            t.call.sendMetadata(reply);
            t.send(script[0] as ServerToClient); // Settings
            void (async () => {
              for (;;) {
                const f = await t.frames.next(10_000).catch(() => undefined);
                if (!f) return;
                sent.push(f);
                received.notify();
                // Answer a stream once it half-closes, with the script's frames for it.
                if (f.frame?.$case === 'halfClose') {
                  for (const s of script.filter((x) => x.streamId === f.streamId)) t.send(s);
                }
              }
            })();
          }),
        ),
      );
      const connection = dial(address);
      const md = new Metadata();
      md.set('tunnel-key', 't1');
      const tunnel = await openTunnel(connection, { metadata: md });
      const client = new TestServiceClient('t', credentials.createInsecure(), { channelOverride: tunnel });

      // The calls the Go client made, rebuilt from its frames.
      const unaryFrames = goSent.filter((f) => f.streamId === 1);
      const firstNew = unaryFrames[0]?.frame;
      assert.equal(firstNew?.$case, 'newStream');
      const callMd = new Metadata();
      callMd.set('x-bin-bin', Buffer.from([0, 1]));
      callMd.set('x-call', 'c');
      const unaryRequest = reassemble(unaryFrames);
      const unaryResult = await new Promise<{ headers: Metadata; trailers: Metadata; error: ServiceError | null }>(
        (resolve) => {
          let headers = new Metadata();
          const call = client.unary(Message.decode(unaryRequest), callMd, (error) => {
            call.on('status', (s) => resolve({ headers, trailers: s.metadata, error }));
          });
          call.on('metadata', (h) => {
            headers = h;
          });
        },
      );
      assert.equal(unaryResult.error, null);
      assert.equal(unaryResult.headers.get('x-h')[0], '1');
      assert.equal(unaryResult.trailers.get('x-t')[0], '2');

      await new Promise<void>((resolve, reject) => {
        const call = client.clientStream((err) => (err ? reject(err) : resolve()));
        call.write(Message.fromPartial({ payload: Buffer.from('a') }));
        call.write(Message.fromPartial({ payload: Buffer.from('b') }));
        call.end();
      });

      const bidi = client.bidiStream();
      bidi.on('error', () => {});
      bidi.write(Message.fromPartial({ payload: Buffer.from('x') }));
      await received.until(
        () => sent.some((f) => f.streamId === 3 && f.frame?.$case === 'requestMessage'),
        'the bidi request on stream 3',
      );
      bidi.cancel();
      await received.until(() => sent.some((f) => f.streamId === 3 && f.frame?.$case === 'cancel'), 'its cancel');

      assert.equal(tunnelHeaders?.get('grpctunnel-negotiate')[0], 'on');
      assert.equal(tunnelHeaders?.get('tunnel-key')[0], 't1');
      // Same frames, in the same order, byte for byte (we set no deadline, so
      // no grpc-timeout header, which we would add and the Go client does not).
      // Deliberate difference: over grpc-js we cut messages into chunks of
      // 16352 bytes, not 16384, so that each frame fits one HTTP/2 DATA frame;
      // the messages are compared whole, and every chunk stays within the limit.
      const hex = (frames: ClientToServer[]) =>
        wholeMessages(frames).map((f) => Buffer.from(ClientToServer.encode(f).finish()).toString('hex'));
      assert.deepEqual(hex(sent), hex(goSent));
      assert.ok(sent.every((f) => dataBytes(f) <= 16384));
      assert.ok(
        sent.filter((f) => f.frame?.$case === 'moreRequestData').length >=
          goSent.filter((f) => f.frame?.$case === 'moreRequestData').length,
        'the large request really was cut into chunks',
      );
      tunnel.close();
      connection.close();
      await stopServer(server);
    });
  }
});

/** The frames with each message's chunks merged into its first frame (whatever the chunk size was). */
function wholeMessages(frames: ClientToServer[]): ClientToServer[] {
  const out: ClientToServer[] = [];
  const open = new Map<number, { size: number; parts: Uint8Array[]; at: number }>();
  for (const f of frames) {
    if (f.frame?.$case === 'requestMessage') {
      open.set(f.streamId, { size: f.frame.value.size, parts: [f.frame.value.data], at: out.length });
      out.push(f);
    } else if (f.frame?.$case === 'moreRequestData') {
      const m = open.get(f.streamId);
      assert.ok(m, `stream ${f.streamId}: more data without a message`);
      m.parts.push(f.frame.value);
      out[m.at] = {
        streamId: f.streamId,
        frame: { $case: 'requestMessage', value: { size: m.size, data: Buffer.concat(m.parts) } },
      };
    } else out.push(f);
  }
  return out;
}

function reassemble(frames: ClientToServer[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of frames) {
    if (f.frame?.$case === 'requestMessage') parts.push(Buffer.from(f.frame.value.data));
    if (f.frame?.$case === 'moreRequestData') parts.push(Buffer.from(f.frame.value));
  }
  return Buffer.concat(parts);
}

describe('Go transcript: reverse tunnels', () => {
  for (const [way, dial] of [
    ['grpc-js client', (address: string) => new TestServiceClient(address, credentials.createInsecure())],
    ['own connection', (address: string) => new TunnelConnection(address)],
  ] as const) {
    it(`our reverse tunnel server answers the go-reverse-server script as the Go one did (${way})`, async () => {
      const lines = scenario('go-reverse-server');
      const script = framesOf(lines, 'script').map((l) => clientFrame(l.frame as Record<string, unknown>));
      const goFrames = framesOf(lines, 'go').map((l) => serverFrame(l.frame as Record<string, unknown>));
      const ours: ServerToClient[] = [];
      const received = new Changes();
      let requestHeaders: Metadata | undefined;
      const { server, address } = await startServer((s) =>
        s.addService(
          { openReverseTunnel: TunnelServiceDefinition.openReverseTunnel },
          {
            openReverseTunnel(call: ServerDuplexStream<ServerToClient, ClientToServer>) {
              requestHeaders = call.metadata;
              const reply = new Metadata();
              reply.set('grpctunnel-negotiate', 'on');
              call.sendMetadata(reply);
              call.on('data', (f: ServerToClient) => {
                ours.push(f);
                received.notify();
                // Once Settings arrives, play the script; the window updates it
                // holds are the network server acknowledging our replies.
                if (f.frame?.$case === 'settings') for (const s of script) call.write(s);
              });
              call.on('error', () => {});
            },
          },
        ),
      );
      const connection = dial(address);
      const reverse = new ReverseTunnelServer(connection);
      reverse.addService(TestServiceService, testServiceImplementation());
      const md = new Metadata();
      md.set('client-key', 'edge-1');
      const served = reverse.serve({ metadata: md });
      await received.until(() => ours.filter((f) => f.frame?.$case === 'closeStream').length === 2, 'two close_stream');
      assert.equal(requestHeaders?.get('client-key')[0], 'edge-1');
      assert.equal(requestHeaders?.get('grpctunnel-negotiate')[0], 'on');
      assert.deepEqual(ours[0], goFrames[0], 'Settings first');
      for (const id of [1, 2]) {
        const received = script.filter((f) => f.streamId === id).reduce((n, f) => n + dataBytes(f), 0);
        compareStream(
          id,
          goFrames.filter((f) => f.streamId === id),
          ours.filter((f) => f.streamId === id),
          received,
        );
      }
      reverse.stop();
      assert.deepEqual(await served, { started: true });
      connection.close();
      await stopServer(server);
    });
  }

  for (const [serverKind, startHandlerServer] of SERVER_KINDS)
    it(`our handler calls through its pool as the Go handler called into the go-reverse-client script (${serverKind})`, async () => {
      const lines = scenario('go-reverse-client');
      const script = framesOf(lines, 'script').map((l) => serverFrame(l.frame as Record<string, unknown>));
      const goSent = framesOf(lines, 'go').map((l) => clientFrame(l.frame as Record<string, unknown>));
      const handler = new TunnelServiceHandler();
      const { stop, address } = await startHandlerServer(handler);
      const raw = new Client(address, credentials.createInsecure());
      const md = new Metadata();
      md.set('grpctunnel-negotiate', 'on');
      const call: ClientDuplexStream<ServerToClient, ClientFrame> = raw.makeBidiStreamRequest(
        OPEN_REVERSE_TUNNEL_PATH,
        encodeServerToClient,
        decodeClientToServer,
        md,
      );
      const sent: ClientToServer[] = [];
      call.on('error', () => {});
      const headers = new Promise<Metadata>((resolve) => call.on('metadata', resolve));
      call.on('data', (f: ClientToServer) => {
        sent.push(f);
        if (f.frame?.$case === 'halfClose')
          for (const s of script.filter((x) => x.streamId === f.streamId)) call.write(s);
      });
      call.write(script[0] as ServerToClient); // Settings: the network client is the tunnel server
      assert.equal((await headers).get('grpctunnel-negotiate')[0], 'on');
      await handler.asChannel().waitForReady({ timeout: 5000 });

      const client = new TestServiceClient('pool', credentials.createInsecure(), {
        channelOverride: handler.asChannel(),
      });
      const callMd = new Metadata();
      callMd.set('x-call', 'r');
      const reply = await new Promise<Message>((resolve, reject) =>
        client.unary(Message.decode(reassemble(goSent)), callMd, (err, r) => (err ? reject(err) : resolve(r))),
      );
      assert.equal(Buffer.from(reply.payload).toString(), 'hello back');
      assert.deepEqual(
        sent.map((f) => Buffer.from(ClientToServer.encode(f).finish()).toString('hex')),
        goSent.map((f) => Buffer.from(ClientToServer.encode(f).finish()).toString('hex')),
        'the same frames, byte for byte',
      );
      const tunnelClosed = once(handler, 'reverseTunnelClose');
      call.end();
      await tunnelClosed;
      assert.equal(handler.openReverseTunnels, 0);
      raw.close();
      await stop();
    });
});
