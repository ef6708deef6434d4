// The handler raises the HTTP/2 windows of connections that carry tunnel
// RPCs (grpc-js's Server has no option for it). Seen from a plain node:http2
// client, so the check is what a peer receives: the server's SETTINGS and the
// connection window it grants.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { afterEach, describe, it } from 'node:test';
import { credentials, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { OPEN_REVERSE_TUNNEL_PATH, OPEN_TUNNEL_PATH } from 'grpctunnel/protocol';
import { raiseClientHttp2Window } from '#grpctunnel/grpc/client/client-http2-window.js';
import { raiseHttp2Window } from '#grpctunnel/grpc/server/http2-window.js';
import { EchoClient } from '../helpers/echo-service.js';
import { startOwnServer } from '../helpers/own-server.js';
import { startServer, stopAllServers } from '../helpers/servers.js';

const MIB = 1 << 20;

/** Opens `path` as a gRPC call from a raw HTTP/2 client; resolves once the server answered with headers. */
async function rawTunnelRpc(address: string, path: string) {
  const session = http2.connect(`http://${address}`);
  const stream = session.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpctunnel-negotiate': 'on',
  });
  stream.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    stream.once('response', () => resolve());
    stream.once('close', () => reject(new Error('the tunnel RPC closed before its headers')));
  });
  // The SETTINGS and WINDOW_UPDATE frames were written before the response headers.
  await new Promise<void>((resolve) => setImmediate(resolve));
  return {
    session,
    close: () =>
      new Promise<void>((resolve) => {
        stream.resume(); // a forward tunnel's Settings frame waits unread: drop it so the stream can close
        stream.close();
        session.close(() => resolve());
      }),
  };
}

describe('HTTP/2 windows of tunnel connections', () => {
  afterEach(stopAllServers);

  for (const [kind, path, ownServer] of [
    ['forward', OPEN_TUNNEL_PATH, false],
    ['reverse', OPEN_REVERSE_TUNNEL_PATH, false],
    ['forward', OPEN_TUNNEL_PATH, true],
    ['reverse', OPEN_REVERSE_TUNNEL_PATH, true],
  ] as const) {
    it(`a ${kind} tunnel RPC gets 1 MiB connection and stream windows by default${ownServer ? ' (handler on its own node:http2 server)' : ''}`, async () => {
      const handler = new TunnelServiceHandler();
      const own = ownServer ? await startOwnServer(handler) : undefined;
      const { address } = own ?? (await startServer((server) => handler.register(server)));
      const rpc = await rawTunnelRpc(address, path);
      try {
        assert.equal(rpc.session.remoteSettings.initialWindowSize, MIB);
        assert.ok(
          (rpc.session.state.remoteWindowSize ?? 0) >= MIB - 1024,
          `connection window ${rpc.session.state.remoteWindowSize}`,
        );
      } finally {
        await rpc.close();
        handler.forceShutdown();
        await own?.stop();
      }
    });
  }

  it('reaches the connection under grpc-js server interceptors too', async () => {
    const handler = new TunnelServiceHandler();
    const passThrough: ServerInterceptor = (_method, call) => new ServerInterceptingCall(call);
    const { address } = await startServer((server) => handler.register(server), {
      serverOptions: { interceptors: [passThrough, passThrough] },
    });
    const rpc = await rawTunnelRpc(address, OPEN_REVERSE_TUNNEL_PATH);
    try {
      assert.equal(rpc.session.remoteSettings.initialWindowSize, MIB);
    } finally {
      await rpc.close();
    }
  });

  it('http2WindowSize sets the size, and 0 leaves grpc-js’s 64 KiB windows', async () => {
    const cases: Array<[number, number]> = [
      [4 * MIB, 4 * MIB],
      [0, 65_535],
    ];
    for (const [size, expected] of cases) {
      const handler = new TunnelServiceHandler({ http2WindowSize: size });
      const { address } = await startServer((server) => handler.register(server));
      const rpc = await rawTunnelRpc(address, OPEN_REVERSE_TUNNEL_PATH);
      try {
        assert.equal(rpc.session.remoteSettings.initialWindowSize, expected);
        assert.ok((rpc.session.state.remoteWindowSize ?? 0) <= expected, `window for ${size}`);
      } finally {
        await rpc.close();
      }
    }
  });

  it('leaves calls alone whose objects do not lead to an HTTP/2 session', () => {
    assert.equal(raiseHttp2Window({}, MIB), 'unsupported');
    assert.equal(raiseHttp2Window({ call: { nextCall: { stream: { session: {} } } } }, MIB), 'unsupported');
    assert.equal(raiseHttp2Window({ call: { nextCall: { nextCall: null } } }, MIB), 'unsupported');
    assert.equal(raiseHttp2Window({}, 0), 'off');
  });

  it('refuses window sizes HTTP/2 cannot use', () => {
    for (const size of [1, 65_534, 2 ** 31, 1.5, -1]) {
      assert.throws(() => new TunnelServiceHandler({ http2WindowSize: size }), RangeError, String(size));
    }
  });
});

/**
 * A bare node:http2 server that answers each tunnel RPC with headers only
 * (no negotiation: the tunnel is ready at once) and hands over the session
 * it arrived on, to read the windows its client grants.
 */
async function rawAnsweringServer() {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  const answered: Array<(session: http2.ServerHttp2Session) => void> = [];
  server.on('session', (session) => sessions.push(session));
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    answered.shift()?.(stream.session as http2.ServerHttp2Session);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    /** The session of the next tunnel RPC, once it has been answered. */
    nextTunnel: () => new Promise<http2.ServerHttp2Session>((resolve) => answered.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}

/** What the client has granted once every frame it sent before a ping's answer was read. */
async function grantedWindows(session: http2.ServerHttp2Session) {
  await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
  return { stream: session.remoteSettings.initialWindowSize, connection: session.state.remoteWindowSize ?? 0 };
}

describe('HTTP/2 windows of the connections that open tunnels', () => {
  for (const [size, expected] of [
    [undefined, MIB],
    [4 * MIB, 4 * MIB],
    [0, 65_535],
  ] as const) {
    it(`openTunnel with http2WindowSize ${size ?? 'unset'} grants ${expected} bytes`, async () => {
      const raw = await rawAnsweringServer();
      const connection = new EchoClient(raw.address, credentials.createInsecure());
      try {
        const answered = raw.nextTunnel();
        const tunnel = await openTunnel(connection, size === undefined ? {} : { http2WindowSize: size });
        const windows = await grantedWindows(await answered);
        assert.equal(windows.stream, expected);
        assert.ok(windows.connection >= expected - 1024 && windows.connection <= expected, `${windows.connection}`);
        tunnel.close();
      } finally {
        connection.close();
        await raw.close();
      }
    });
  }

  for (const [size, expected] of [
    [undefined, MIB],
    [4 * MIB, 4 * MIB],
    [0, 65_535],
  ] as const) {
    it(`a TunnelConnection with http2WindowSize ${size ?? 'unset'} grants ${expected} bytes`, async () => {
      const raw = await rawAnsweringServer();
      const connection = new TunnelConnection(raw.address, size === undefined ? {} : { http2WindowSize: size });
      try {
        const answered = raw.nextTunnel();
        // openTunnel's own option only ever raises: 0 leaves the connection's window as it was made.
        const tunnel = await openTunnel(connection, { http2WindowSize: 0 });
        const windows = await grantedWindows(await answered);
        assert.equal(windows.stream, expected);
        assert.ok(windows.connection >= expected - 1024 && windows.connection <= expected, `${windows.connection}`);
        tunnel.close();
      } finally {
        connection.close();
        await raw.close();
      }
    });
  }

  it('keeps a larger window the connection was made with', async () => {
    const raw = await rawAnsweringServer();
    const connection = new EchoClient(raw.address, credentials.createInsecure(), {
      'grpc-node.flow_control_window': 8 * MIB,
    });
    try {
      const answered = raw.nextTunnel();
      const tunnel = await openTunnel(connection);
      const windows = await grantedWindows(await answered);
      assert.equal(windows.stream, 8 * MIB);
      assert.ok(windows.connection > 4 * MIB, `${windows.connection}`);
      tunnel.close();
    } finally {
      connection.close();
      await raw.close();
    }
  });

  it('a reverse tunnel server raises its connection’s windows too', async () => {
    const raw = await rawAnsweringServer();
    const connection = new EchoClient(raw.address, credentials.createInsecure());
    const reverse = new ReverseTunnelServer(connection);
    try {
      const answered = raw.nextTunnel();
      const connected = new Promise((resolve) => reverse.once('connected', resolve));
      const served = reverse.serve();
      await connected;
      const windows = await grantedWindows(await answered);
      assert.equal(windows.stream, MIB);
      reverse.stop();
      await served;
    } finally {
      connection.close();
      await raw.close();
    }
  });

  it('leaves client calls alone whose objects do not lead to an HTTP/2 session', () => {
    assert.equal(raiseClientHttp2Window({}, MIB), 'unsupported');
    assert.equal(raiseClientHttp2Window({ call: { nextCall: { http2Stream: { session: {} } } } }, MIB), 'unsupported');
    assert.equal(raiseClientHttp2Window({}, 0), 'off');
  });

  it('refuses window sizes HTTP/2 cannot use', async () => {
    const connection = new EchoClient('127.0.0.1:1', credentials.createInsecure());
    for (const size of [1, 65_534, 2 ** 31, 1.5, -1]) {
      await assert.rejects(openTunnel(connection, { http2WindowSize: size }), RangeError, String(size));
      assert.throws(() => new ReverseTunnelServer(connection, { http2WindowSize: size }), RangeError, String(size));
    }
    connection.close();
  });
});
