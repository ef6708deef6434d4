// The handler raises the HTTP/2 windows of connections that carry tunnel
// RPCs (grpc-js's Server has no option for it). Seen from a plain node:http2
// client, so the check is what a peer receives: the server's SETTINGS and the
// connection window it grants.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { afterEach, describe, it } from 'node:test';
import { ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { raiseHttp2Window } from '../../src/grpc/server/http2-window.js';
import { TunnelServiceHandler } from '../../src/index.js';
import { OPEN_REVERSE_TUNNEL_PATH, OPEN_TUNNEL_PATH } from '../../src/protocol.js';
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

  for (const [kind, path] of [
    ['forward', OPEN_TUNNEL_PATH],
    ['reverse', OPEN_REVERSE_TUNNEL_PATH],
  ] as const) {
    it(`a ${kind} tunnel RPC gets 1 MiB connection and stream windows by default`, async () => {
      const handler = new TunnelServiceHandler();
      const { address } = await startServer((server) => handler.register(server));
      const rpc = await rawTunnelRpc(address, path);
      try {
        assert.equal(rpc.session.remoteSettings.initialWindowSize, MIB);
        assert.ok(
          (rpc.session.state.remoteWindowSize ?? 0) >= MIB - 1024,
          `connection window ${rpc.session.state.remoteWindowSize}`,
        );
      } finally {
        await rpc.close();
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
    for (const [size, expected] of [
      [4 * MIB, 4 * MIB],
      [0, 65_535],
    ]) {
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
