// Wire-level edge cases a tunnel server must take from any peer (issue 11):
// the longest deadlines grpc-timeout can state, a revision-one stream that
// opens with a zero window, and metadata over the tunnel's size limit. Each
// scenario ends with a normal call on the same tunnel, so a fix that tore the
// tunnel down would still fail.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  type ClientDuplexStream,
  credentials,
  type handleUnaryCall,
  Metadata,
  makeGenericClientConstructor,
  type ServerUnaryCall,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { openTunnel, TunnelServiceHandler } from 'grpctunnel';
import { DEFAULT_MAX_METADATA_SIZE } from '#grpctunnel/engine/metadata-size.js';
import { unary } from '../helpers/calls.js';
import { EchoClient, type EchoObservations, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { methodDefinition, rawBytesCodec } from '../helpers/method-definition.js';
import {
  c2s,
  closeOf,
  type RawClient,
  RawTunnelServiceDefinition,
  rawClient,
  rawTunnelService,
  sendUnary,
} from '../helpers/raw-peer.js';
import { forwardFixture, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

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

async function tunnelServer(setup?: (handler: TunnelServiceHandler) => void, serverOptions = {}) {
  const handler = new TunnelServiceHandler();
  handler.addService(EchoService, echoImplementation());
  setup?.(handler);
  return startServer((s) => handler.register(s), { serverOptions });
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

const MiB = 1024 * 1024;

/** Metadata with one value of `bytes` bytes under `key`. */
function bigMetadata(key: string, bytes: number): Metadata {
  const md = new Metadata();
  md.set(key, 'm'.repeat(bytes));
  return md;
}

/** A bidi call left open while the oversized one fails; it must still echo afterwards. */
function openBystander(client: EchoClient) {
  const call: ClientDuplexStream<Buffer, Buffer> = client.bidi();
  const replies: Buffer[] = [];
  call.on('data', (b: Buffer) => replies.push(b));
  const ended = new Promise<{ code: number }>((resolve) => call.on('status', resolve));
  call.on('error', () => {});
  return {
    async finish() {
      call.write(Buffer.from('bystander'));
      call.end();
      const st = await ended;
      assert.equal(st.code, status.OK, 'the call open alongside is unharmed');
      assert.deepEqual(Buffer.concat(replies), Buffer.from('bystander'));
    },
  };
}

/** Response headers or trailers of the size the request names ("headers:N" / "trailers:N"). */
const BigResponseService = {
  send: methodDefinition('test.Big', 'Send', false, false, rawBytesCodec),
};
function bigResponses(cancelled: string[]) {
  const send: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
    const [where, size] = call.request.toString().split(':');
    call.on('cancelled', () => cancelled.push(String(where)));
    if (where === 'headers') call.sendMetadata(bigMetadata('x-big', Number(size)));
    callback(null, Buffer.from('done'), where === 'trailers' ? bigMetadata('x-big', Number(size)) : undefined);
  };
  return { send };
}

describe('metadata over the limit fails only its call', () => {
  it('documents the limit: 1 MiB, above what grpc-js carries directly', () => {
    assert.equal(DEFAULT_MAX_METADATA_SIZE, MiB);
  });

  it('request headers: our client fails the call locally with RESOURCE_EXHAUSTED; the tunnel and its calls go on', async () => {
    const f = await forwardFixture();
    try {
      const bystander = openBystander(f.echo);
      // 64 KiB works straight over grpc-js, so it must work through the tunnel too.
      const direct = await startServer((s) => s.addService(EchoService, echoImplementation()));
      const plain = new EchoClient(direct.address, credentials.createInsecure());
      const mid = bigMetadata('x-echo-mid', 64 * 1024);
      const [d, t] = [await unary(plain, Buffer.from('a'), mid), await unary(f.echo, Buffer.from('a'), mid)];
      plain.close();
      await stopServer(direct.server);
      assert.equal(d.error, null);
      assert.equal(t.error, null, 'metadata grpc-js carries directly crosses the tunnel');
      assert.equal(t.headers?.get('x-echo-mid')[0], d.headers?.get('x-echo-mid')[0]);
      for (const size of [2 * MiB, 5 * MiB]) {
        const r = await unary(f.echo, Buffer.from('big'), bigMetadata('x-big', size));
        assert.equal(r.error?.code, status.RESOURCE_EXHAUSTED, `${size} bytes of request headers`);
        assert.match(String(r.error?.details), /request headers of \d+ bytes exceed the limit of 1048576 bytes/);
      }
      await bystander.finish();
      const after = await unary(f.echo, Buffer.from('after'));
      assert.equal(after.error, null, 'a normal call on the same tunnel works');
      assert.equal(f.tunnel.error, undefined, 'the tunnel never failed');
    } finally {
      await f.close();
    }
  });

  it('request headers from a raw peer over the limit: RESOURCE_EXHAUSTED for that stream only', async () => {
    // Unlimited messages on the tunnel RPC, so even a 5 MiB frame reaches the engine.
    const { address } = await tunnelServer(undefined, { 'grpc.max_receive_message_length': -1 });
    const peer = await negotiatedPeer(address);
    try {
      peer.send(c2s.newStream(1, '/test.Echo/Bidi'));
      let id = 3;
      for (const size of [MiB + 1, 5 * MiB]) {
        peer.send(c2s.newStream(id, '/test.Echo/Unary', 1, 65536, { 'x-big': 'm'.repeat(size) }));
        const r = await closeOf(peer, id);
        assert.equal(r.status?.code, status.RESOURCE_EXHAUSTED, `${size} bytes of request headers`);
        assert.deepEqual(
          r.frames.map((f) => f.frame?.$case),
          ['closeStream'],
          'refused before any handler ran: no headers',
        );
        id += 2;
      }
      // The stream opened before is unharmed, and a new one works.
      const ping = Buffer.from('ping');
      peer.send(c2s.message(1, ping.length, ping));
      peer.send(c2s.halfClose(1));
      assert.equal((await closeOf(peer, 1)).status, undefined);
      await assertTunnelServes(peer, id);
    } finally {
      peer.close();
    }
  });

  it('response headers and trailers over the limit: RESOURCE_EXHAUSTED for that call, the tunnel goes on', async () => {
    const cancelled: string[] = [];
    const f = await forwardFixture();
    f.handler.addService(BigResponseService, bigResponses(cancelled));
    const Big = makeGenericClientConstructor(BigResponseService, 'Big');
    const big = new Big('t', credentials.createInsecure(), { channelOverride: f.tunnel }) as EchoClient;
    try {
      const bystander = openBystander(f.echo);
      const call = (req: string) =>
        new Promise<ServiceError | null>((resolve) =>
          big.send(Buffer.from(req), (err: ServiceError | null) => resolve(err)),
        );
      assert.equal(await call('headers:1000'), null, 'small headers are fine');
      for (const size of [2 * MiB, 5 * MiB]) {
        const h = await call(`headers:${size}`);
        assert.equal(h?.code, status.RESOURCE_EXHAUSTED, `${size} bytes of response headers`);
        assert.match(String(h?.details), /response headers of \d+ bytes exceed the limit/);
        const t = await call(`trailers:${size}`);
        assert.equal(t?.code, status.RESOURCE_EXHAUSTED, `${size} bytes of response trailers`);
        assert.match(String(t?.details), /response trailers of \d+ bytes exceed the limit/);
      }
      assert.ok(cancelled.includes('headers'), 'the handler whose headers were refused hears its call ended');
      await bystander.finish();
      assert.equal((await unary(f.echo, Buffer.from('after'))).error, null);
      assert.equal(f.tunnel.error, undefined);
    } finally {
      big.close();
      await f.close();
    }
  });

  it('response headers or trailers over the limit from a raw server: RESOURCE_EXHAUSTED for that call', async () => {
    const huge = { md: { 'x-big': { val: [Buffer.alloc(MiB + 1, 0x61)] } } };
    let answered = 0;
    const script = rawTunnelService((t) => {
      const reply = new Metadata();
      reply.set('grpctunnel-negotiate', 'on');
      t.call.sendMetadata(reply);
      t.send({
        streamId: -1,
        frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
      });
      void (async () => {
        for (;;) {
          const f = await t.frames.next(10_000).catch(() => undefined);
          if (!f) return;
          if (f.frame?.$case !== 'halfClose') continue;
          const n = answered++;
          const data = Buffer.from('ok');
          t.send({ streamId: f.streamId, frame: { $case: 'responseHeaders', value: n === 0 ? huge : { md: {} } } });
          if (n === 0) continue; // our client cancels this one
          t.send({ streamId: f.streamId, frame: { $case: 'responseMessage', value: { size: 2, data } } });
          t.send({
            streamId: f.streamId,
            frame: {
              $case: 'closeStream',
              value: { responseTrailers: n === 1 ? huge : { md: {} }, status: undefined },
            },
          });
        }
      })();
    });
    const { server, address } = await startServer((s) => s.addService(RawTunnelServiceDefinition, script));
    const connection = new EchoClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    const echo = new EchoClient('t', credentials.createInsecure(), { channelOverride: tunnel });
    try {
      // A deadline, so that a client that let the call hang fails the test cleanly.
      const soon = () => ({ deadline: Date.now() + 5000 });
      const h = await unary(echo, Buffer.from('x'), new Metadata(), soon());
      assert.equal(h.error?.code, status.RESOURCE_EXHAUSTED);
      assert.match(String(h.error?.details), /response headers of \d+ bytes exceed the limit/);
      const t = await unary(echo, Buffer.from('x'), new Metadata(), soon());
      assert.equal(t.error?.code, status.RESOURCE_EXHAUSTED);
      assert.match(String(t.error?.details), /response trailers of \d+ bytes exceed the limit/);
      const ok = await unary(echo, Buffer.from('x'), new Metadata(), soon());
      assert.equal(ok.error, null, 'the next call on the tunnel works');
      assert.equal(tunnel.error, undefined);
    } finally {
      tunnel.close();
      echo.close();
      connection.close();
      await stopServer(server);
    }
  });
});
