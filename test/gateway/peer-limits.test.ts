// The gateway's per-peer limits with real sockets: connections over a
// peer's share are closed at once, silent connections and HTTP/2 sessions
// that hold no stream are closed after the idle timeout, and ordinary gRPC
// calls (plaintext and TLS) pass through the guarded listener untouched.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { afterEach, it } from 'node:test';
import { credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { closeIdleSessions, listenGuarded, PeerConnectionGuard } from '#gateway/gateway/peer-limits.js';
import { unary } from '../helpers/calls.js';
import { makePki } from '../helpers/certs.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function echoServer(options: object = {}): Server {
  const server = new Server(options);
  server.addService(EchoService, echoImplementation());
  cleanups.push(() => server.forceShutdown());
  return server;
}

function connect(address: string): Promise<net.Socket> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), host as string, () => resolve(s));
    s.once('error', reject);
    cleanups.push(() => void s.destroy());
  });
}

/** The server side of a socket closes a moment after the client side: let pending I/O callbacks run. */
async function settled(check: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setImmediate(r));
}

const closed = (s: net.Socket | http2.ClientHttp2Session) => new Promise<void>((r) => s.once('close', () => r()));

it('closes connections over a peer share at once, and counts the rest', async () => {
  const refused: string[] = [];
  const guard = new PeerConnectionGuard({ maxConnectionsPerPeer: 2, idleTimeoutMs: 60_000 }, (_peer, why) =>
    refused.push(why),
  );
  const port = await listenGuarded(echoServer(), '127.0.0.1:0', ServerCredentials.createInsecure(), guard);
  cleanups.push(() => port.close());
  const a = await connect(port.address);
  const b = await connect(port.address);
  const c = await connect(port.address);
  await closed(c);
  assert.deepEqual(refused, ['too-many-connections']);
  assert.equal(guard.connections, 2);
  assert.ok(!a.destroyed && !b.destroyed);
  a.destroy();
  await closed(a);
  const d = await connect(port.address);
  assert.ok(!d.destroyed, 'a closed connection frees its place');
});

it('closes a connection that sends nothing after the idle timeout', async () => {
  const refused: string[] = [];
  const guard = new PeerConnectionGuard({ maxConnectionsPerPeer: 10, idleTimeoutMs: 200 }, (_p, why) =>
    refused.push(why),
  );
  const port = await listenGuarded(echoServer(), '127.0.0.1:0', ServerCredentials.createInsecure(), guard);
  cleanups.push(() => port.close());
  const began = Date.now();
  const silent = await connect(port.address);
  await closed(silent);
  assert.ok(Date.now() - began >= 150, 'not before the timeout');
  assert.deepEqual(refused, ['idle']);
  await settled(() => guard.connections === 0);
  assert.equal(guard.connections, 0);
});

it('grpc-js closes an HTTP/2 session that holds no stream (max_connection_idle_ms)', async () => {
  const guard = new PeerConnectionGuard({ maxConnectionsPerPeer: 10, idleTimeoutMs: 60_000 }, () => {});
  const server = echoServer({ 'grpc.max_connection_idle_ms': 200 });
  const port = await listenGuarded(server, '127.0.0.1:0', ServerCredentials.createInsecure(), guard);
  cleanups.push(() => port.close());
  const session = http2.connect(`http://${port.address}`);
  cleanups.push(() => void session.destroy());
  session.on('error', () => {});
  await closed(session);
  await settled(() => guard.connections === 0);
  assert.equal(guard.connections, 0);
});

it('serves gRPC calls through the guarded listener, over TLS too', async () => {
  const pki = makePki([]);
  const guard = new PeerConnectionGuard({ maxConnectionsPerPeer: 10, idleTimeoutMs: 60_000 }, () => {});
  for (const secure of [false, true]) {
    const port = await listenGuarded(
      echoServer(),
      '127.0.0.1:0',
      secure
        ? ServerCredentials.createSsl(null, [{ cert_chain: pki.server.cert, private_key: pki.server.key }], false)
        : ServerCredentials.createInsecure(),
      guard,
    );
    cleanups.push(() => port.close());
    const echo = new EchoClient(port.address, secure ? credentials.createSsl(pki.ca) : credentials.createInsecure());
    cleanups.push(() => echo.close());
    const r = await unary(echo, Buffer.from(`secure=${secure}`));
    assert.equal(r.value?.toString(), `secure=${secure}`);
  }
});

it('closeIdleSessions closes node:http2 sessions without streams, and only once their streams end', async () => {
  const server = http2.createServer();
  closeIdleSessions(server, 200);
  let respond: (() => void) | undefined;
  server.on('stream', (stream) => {
    respond = () => {
      stream.respond({ ':status': 200 });
      stream.end('done');
    };
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;

  const idle = http2.connect(`http://127.0.0.1:${port}`);
  idle.on('error', () => {});
  await closed(idle);

  const busy = http2.connect(`http://127.0.0.1:${port}`);
  cleanups.push(() => void busy.destroy());
  const request = busy.request({ ':path': '/' });
  request.on('response', () => {});
  let ended = false;
  request.on('end', () => (ended = true));
  request.resume();
  const busyClosed = closed(busy);
  // Held well past the idle timeout by the open stream: answered on demand.
  await new Promise<void>((r) => {
    const check = () => (respond ? r() : setImmediate(check));
    check();
  });
  const beforeAnswer = Date.now();
  await new Promise((r) => setTimeout(r, 400));
  assert.ok(!busy.closed, 'a session with an open stream stays');
  respond?.();
  await busyClosed;
  assert.ok(ended, 'its stream finished');
  assert.ok(Date.now() - beforeAnswer >= 400);
});

it('a peer that resets its connection before sending anything harms nobody', async () => {
  const guard = new PeerConnectionGuard({ maxConnectionsPerPeer: 10, idleTimeoutMs: 60_000 }, () => {});
  const port = await listenGuarded(echoServer(), '127.0.0.1:0', ServerCredentials.createInsecure(), guard);
  cleanups.push(() => port.close());
  for (let i = 0; i < 5; i++) {
    const s = await connect(port.address);
    const gone = closed(s);
    s.resetAndDestroy();
    await gone;
  }
  await settled(() => guard.connections === 0);
  const echo = new EchoClient(port.address, credentials.createInsecure());
  cleanups.push(() => echo.close());
  assert.equal((await unary(echo, Buffer.from('still here'))).value?.toString(), 'still here');
});

it('close() also closes connections still waiting for their first bytes', async () => {
  const guard = new PeerConnectionGuard({ maxConnectionsPerPeer: 10, idleTimeoutMs: 60_000 }, () => {});
  const port = await listenGuarded(echoServer(), '127.0.0.1:0', ServerCredentials.createInsecure(), guard);
  const silent = await connect(port.address);
  const gone = closed(silent);
  await settled(() => guard.connections === 1);
  await port.close();
  await gone;
});
