// TunnelConnection: the tunnel RPC on the library's own node:http2 session
// (issue 16). What a user can observe must be what the same tunnel shows
// over a grpc-js client: each scenario runs both ways and the observations
// are compared (TLS and mTLS identity on both ends, a server without the
// tunnel service, an HTTP/2 server that is not a gRPC one, nobody
// listening). Plus the pure rules under it, as tables: grpc-js's status
// mapping of closed streams and HTTP codes, grpc-timeout, message framing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createSecureServer, createServer, type Http2Server, constants as h2 } from 'node:http2';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { afterEach, before, describe, it } from 'node:test';
import { createSecureContext, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import {
  type ChannelCredentials,
  type Client,
  connectivityState,
  credentials,
  Metadata,
  ServerCredentials,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import {
  getTunnelChannel,
  openTunnel,
  ReverseTunnelServer,
  TunnelConnection,
  type TunnelInfo,
  TunnelServiceHandler,
} from 'grpctunnel';
import { encodeTimeout } from '#grpctunnel/engine/deadline.js';
import { statusOfClosedStream, statusOfHttpCode } from '#grpctunnel/grpc/client/raw/closed-status.js';
import { decodeGrpcMessage, encodeGrpcMessage } from '#grpctunnel/grpc/status.js';
import { frameMessage, grpcTimeout, MessageReader } from '#grpctunnel/grpc/wire.js';
import { unary } from '../helpers/calls.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import {
  EchoClient,
  type EchoObservations,
  EchoService,
  echoImplementation,
  handlerStarted,
  release,
} from '../helpers/echo-service.js';
import { startServer, stopAllServers } from '../helpers/servers.js';

afterEach(stopAllServers);

const insecure = credentials.createInsecure();

/** The two ways to carry a tunnel: a grpc-js client with `creds`, or a TunnelConnection with `tls`. */
function bothWays(creds: ChannelCredentials, tls: ConstructorParameters<typeof TunnelConnection>[1]) {
  return [
    { name: 'grpc-js', dial: (address: string): Client | TunnelConnection => new EchoClient(address, creds) },
    { name: 'own connection', dial: (address: string) => new TunnelConnection(address, tls) },
  ];
}

/** Runs `scenario` both ways; asserts equal observations and returns them. */
async function same<T>(
  ways: ReturnType<typeof bothWays>,
  scenario: (dial: (a: string) => Client | TunnelConnection) => Promise<T>,
) {
  const [grpcJs, own] = [await scenario(ways[0]!.dial), await scenario(ways[1]!.dial)];
  assert.deepEqual(own, grpcJs, 'the own connection differs from grpc-js');
  return grpcJs;
}

/** What openTunnel's rejection says: code and details (text grpc-js varies by cause is normalised by the caller). */
async function rejection(opening: Promise<unknown>): Promise<ServiceError> {
  return opening.then(
    () => assert.fail('openTunnel resolved'),
    (e: unknown) => e as ServiceError,
  );
}

describe('TunnelConnection over TLS', () => {
  let pki: TestPki;
  before(() => {
    pki = makePki(['tunnel-client']);
  });

  it('mTLS: each end sees the other certificate, as over grpc-js', async () => {
    const seen: EchoObservations = { cancelled: [] };
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation(seen));
    const { address } = await startServer((s) => handler.register(s), {
      credentials: ServerCredentials.createSsl(
        pki.ca,
        [{ private_key: pki.server.key, cert_chain: pki.server.cert }],
        true,
      ),
    });
    const client = pki.clients['tunnel-client']!;
    const ways = bothWays(credentials.createSsl(pki.ca, client.key, client.cert), {
      tls: { ca: pki.ca, key: client.key, cert: client.cert },
    });
    const observed = await same(ways, async (dial) => {
      const connection = dial(address);
      const tunnel = await openTunnel(connection);
      const echo = new EchoClient('tunnel', insecure, { channelOverride: tunnel });
      const call = echo.unary(Buffer.from('x'), () => {});
      await once(call, 'status');
      const clientSide = call.getAuthContext?.() as {
        transportSecurityType?: string;
        sslPeerCertificate?: { subject?: { CN?: string } };
      };
      const serverSide = seen.lastTunnel?.authContext as typeof clientSide;
      const result = {
        carried: getTunnelChannel(call) === tunnel,
        clientSees: [clientSide?.transportSecurityType, clientSide?.sslPeerCertificate?.subject?.CN],
        serverSees: [serverSide?.transportSecurityType, serverSide?.sslPeerCertificate?.subject?.CN],
        peer: /^127\.0\.0\.1:\d+$/.test(tunnel.peer),
      };
      tunnel.close();
      await tunnel.closed;
      echo.close();
      connection.close();
      return result;
    });
    assert.deepEqual(observed, {
      carried: true,
      clientSees: ['ssl', 'localhost'],
      serverSees: ['ssl', 'tunnel-client'],
      peer: true,
    });
  });

  it('mTLS, reverse tunnels: each end sees the other certificate, as over grpc-js', async () => {
    const handler = new TunnelServiceHandler();
    const { address } = await startServer((s) => handler.register(s), {
      credentials: ServerCredentials.createSsl(
        pki.ca,
        [{ private_key: pki.server.key, cert_chain: pki.server.cert }],
        true,
      ),
    });
    const client = pki.clients['tunnel-client']!;
    const ways = bothWays(credentials.createSsl(pki.ca, client.key, client.cert), {
      tls: { ca: pki.ca, key: client.key, cert: client.cert },
    });
    type Identity = { transportSecurityType?: string; sslPeerCertificate?: { subject?: { CN?: string } } };
    const who = (context: unknown) => {
      const c = context as Identity | undefined;
      return [c?.transportSecurityType, c?.sslPeerCertificate?.subject?.CN];
    };
    const observed = await same(ways, async (dial) => {
      const connection = dial(address);
      const { reverse, serving, tunnel, info } = await serveEchoReverse(handler, connection);
      const echo = new EchoClient('pool', insecure, { channelOverride: handler.asChannel() });
      const call = await unary(echo, Buffer.from('r'));
      reverse.stop();
      const result = await serving;
      echo.close();
      connection.close();
      return {
        called: call.error,
        handlerSees: who(tunnel.info.authContext),
        reverseServerSees: who(info.authContext),
        peer: /^127\.0\.0\.1:\d+$/.test(info.peer),
        result,
      };
    });
    assert.deepEqual(observed, {
      called: null,
      handlerSees: ['ssl', 'tunnel-client'],
      reverseServerSees: ['ssl', 'localhost'],
      peer: true,
      result: { started: true },
    });
  });

  it('a server certificate from another CA: openTunnel rejects with UNAVAILABLE', async () => {
    const other = makePki([]);
    const handler = new TunnelServiceHandler();
    const { address } = await startServer((s) => handler.register(s), {
      credentials: ServerCredentials.createSsl(null, [
        { private_key: other.server.key, cert_chain: other.server.cert },
      ]),
    });
    const code = await same(bothWays(credentials.createSsl(pki.ca), { tls: { ca: pki.ca } }), async (dial) => {
      const connection = dial(address);
      const err = await rejection(openTunnel(connection));
      connection.close();
      return err.code;
    });
    assert.equal(code, status.UNAVAILABLE);
  });
});

describe('TunnelConnection over TLS: names and roots', () => {
  /** A tunnel server with the echo service over TLS with `pki`'s server certificate; its port. */
  async function tlsServer(pki: TestPki): Promise<number> {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const { address } = await startServer((s) => handler.register(s), {
      credentials: ServerCredentials.createSsl(null, [{ private_key: pki.server.key, cert_chain: pki.server.cert }]),
    });
    return Number(address.split(':')[1]);
  }

  /** Opens a tunnel to `address`, makes one call through it: null, or the code that failed. */
  async function callThrough(connection: Client | TunnelConnection): Promise<number | null> {
    const outcome = await openTunnel(connection).then(
      async (tunnel) => {
        const echo = new EchoClient('tunnel', insecure, { channelOverride: tunnel });
        const result = await unary(echo, Buffer.from('x'));
        tunnel.close();
        await tunnel.closed;
        echo.close();
        return result.error?.code ?? null;
      },
      (err: ServiceError) => err.code,
    );
    connection.close();
    return outcome;
  }

  it('a DNS name is the name checked: localhost with a certificate for localhost opens, as over grpc-js', async () => {
    const pki = makePki([]);
    const port = await tlsServer(pki);
    const ways = bothWays(credentials.createSsl(pki.ca), { tls: { ca: pki.ca } });
    assert.equal(await same(ways, async (dial) => callThrough(dial(`localhost:${port}`))), null);
  });

  it('a certificate for another name (and for the address) is refused for localhost: UNAVAILABLE, as over grpc-js', async () => {
    // Valid for 127.0.0.1, the address localhost reaches: only a check of the name fails it.
    const pki = makePki([], 'IP:127.0.0.1,DNS:elsewhere.test');
    const port = await tlsServer(pki);
    const ways = bothWays(credentials.createSsl(pki.ca), { tls: { ca: pki.ca } });
    assert.equal(await same(ways, async (dial) => callThrough(dial(`localhost:${port}`))), status.UNAVAILABLE);
    // The same server by its address: the certificate fits, the tunnel opens.
    assert.equal(await same(ways, async (dial) => callThrough(dial(`127.0.0.1:${port}`))), null);
  });

  it('the server name sent (SNI) is the DNS name, as grpc-js sends; none for an address (RFC 6066), where grpc-js sends the address', async () => {
    const pki = makePki([]);
    const names: Array<string | undefined> = [];
    const server = createSecureServer({
      key: pki.server.key,
      cert: pki.server.cert,
      SNICallback: (name, callback) => {
        names.push(name);
        callback(null, createSecureContext({ key: pki.server.key, cert: pki.server.cert }));
      },
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      if (!(socket as TLSSocket & { servername?: string | false }).servername) names.push(undefined);
    });
    server.on('stream', (stream) => {
      stream.on('error', () => {});
      stream.respond({ ':status': 404 }, { endStream: true });
    });
    server.listen(0, '127.0.0.1');
    try {
      await once(server, 'listening');
      const port = (server.address() as AddressInfo).port;
      const ways = bothWays(credentials.createSsl(pki.ca), { tls: { ca: pki.ca } });
      const sentFor = async (dial: (a: string) => Client | TunnelConnection, address: string) => {
        const start = names.length;
        await callThrough(dial(address));
        return names.slice(start);
      };
      assert.deepEqual(await same(ways, (dial) => sentFor(dial, `localhost:${port}`)), ['localhost']);
      // An IP address is no server name (RFC 6066; Node warns when one is set):
      // grpc-js sends it anyway, a TunnelConnection sends none. The certificate
      // is checked against the address either way.
      assert.deepEqual(await sentFor(ways[1]!.dial, `127.0.0.1:${port}`), [undefined]);
    } finally {
      server.close();
    }
  });

  it('tls: true verifies with the system roots: a certificate from a private CA is refused (UNAVAILABLE), as createSsl() refuses it', async () => {
    const pki = makePki([]);
    const port = await tlsServer(pki);
    const ways = bothWays(credentials.createSsl(), { tls: true });
    assert.equal(await same(ways, async (dial) => callThrough(dial(`localhost:${port}`))), status.UNAVAILABLE);
  });
});

/**
 * Serves Echo on a reverse tunnel over `connection`; resolves once it is open,
 * with the handler's view of it (`tunnel`) and the reverse server's (`info`).
 */
async function serveEchoReverse(handler: TunnelServiceHandler, connection: Client | TunnelConnection) {
  const reverse = new ReverseTunnelServer(connection);
  reverse.addService(EchoService, echoImplementation());
  const opened = once(handler, 'reverseTunnelOpen') as Promise<[{ info: TunnelInfo }]>;
  const connected = once(reverse, 'connected') as Promise<[TunnelInfo]>;
  const serving = reverse.serve();
  const [[tunnel], [info]] = await Promise.all([opened, connected]);
  return { reverse, serving, tunnel, info };
}

describe('TunnelConnection: the target a user sees', () => {
  it("a tunnel's getTarget(), and each end's TunnelInfo.host, read as over grpc-js (dns:host:port)", async () => {
    const seen: EchoObservations = { cancelled: [] };
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation(seen));
    const { address } = await startServer((s) => handler.register(s));
    const observed = await same(bothWays(insecure, {}), async (dial) => {
      const connection = dial(address);
      // Forward: the tunnel channel, and what the handler's services see.
      const tunnel = await openTunnel(connection);
      const echo = new EchoClient('tunnel', insecure, { channelOverride: tunnel });
      await unary(echo, Buffer.from('x'));
      const forward = { getTarget: tunnel.getTarget(), handlerSees: seen.lastTunnel?.host };
      tunnel.close();
      await tunnel.closed;
      echo.close();
      // Reverse: what the reverse tunnel server reports, and what the handler sees.
      const { reverse, serving, tunnel: open, info } = await serveEchoReverse(handler, connection);
      reverse.forceShutdown();
      await serving;
      connection.close();
      return { forward, reverse: { serverSees: info.host, handlerSees: open.info.host } };
    });
    assert.deepEqual(observed, {
      forward: { getTarget: `tunnel:dns:${address}`, handlerSees: address },
      reverse: { serverSees: `dns:${address}`, handlerSees: address },
    });
  });
});

describe('TunnelConnection: servers that refuse', () => {
  it('a gRPC server without the tunnel service: UNIMPLEMENTED with grpc-js’s text', async () => {
    const { address } = await startServer(() => {});
    const observed = await same(bothWays(insecure, {}), async (dial) => {
      const connection = dial(address);
      const err = await rejection(openTunnel(connection));
      connection.close();
      return { code: err.code, details: err.details, message: err.message };
    });
    assert.equal(observed.code, status.UNIMPLEMENTED);
  });

  it('an HTTP/2 server that is not a gRPC one: its HTTP status mapped as grpc-js maps it', async () => {
    // With a body, the answer's headers come first: the tunnel opens as toward a
    // peer that does not negotiate (revision 0), then ends with the mapped status.
    // Without one, the headers end the stream: openTunnel rejects.
    for (const [httpStatus, body, code] of [
      [404, 'not here', status.UNIMPLEMENTED],
      [503, 'busy', status.UNAVAILABLE],
      [401, '', status.UNAUTHENTICATED],
      [500, '', status.UNKNOWN],
    ] as const) {
      const server: Http2Server = createServer();
      server.on('stream', (stream) => {
        stream.on('error', () => {});
        stream.respond({ ':status': httpStatus, 'content-type': 'text/plain' }, { endStream: body === '' });
        if (body !== '') stream.end(body);
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      const observed = await same(bothWays(insecure, {}), async (dial) => {
        const connection = dial(address);
        const outcome = await openTunnel(connection).then(
          async (tunnel) => {
            const err = (await tunnel.closed) as ServiceError | undefined;
            return { opened: true, code: err?.code, details: err?.details };
          },
          (err: ServiceError) => ({ opened: false, code: err.code, details: err.details }),
        );
        connection.close();
        return outcome;
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
      assert.equal(observed.code, code, String(httpStatus));
      assert.equal(observed.opened, body !== '', String(httpStatus));
    }
  });

  for (const how of ['tryShutdown', 'forceShutdown'] as const) {
    it(`the server going away (${how}) with a call running: the same statuses as over grpc-js`, async () => {
      const observed = await same(bothWays(insecure, {}), async (dial) => {
        const seen: EchoObservations = { cancelled: [] };
        const handler = new TunnelServiceHandler();
        handler.addService(EchoService, echoImplementation(seen));
        const { server, address } = await startServer((s) => handler.register(s));
        const connection = dial(address);
        const tunnel = await openTunnel(connection);
        const echo = new EchoClient('tunnel', insecure, { channelOverride: tunnel });
        const call = echo.bidi();
        const failed = new Promise<ServiceError | null>((resolve) => {
          call.on('error', resolve);
          call.on('end', () => resolve(null));
        });
        call.on('data', () => {});
        call.write(Buffer.from('ping'));
        await once(call, 'data');
        if (how === 'tryShutdown') {
          const stopped = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
          // The tunnel is a call in flight: the server waits for it; end it from this side.
          call.end();
          const ended = await failed;
          tunnel.close();
          await stopped;
          const closedWith = await tunnel.closed;
          echo.close();
          connection.close();
          return { call: ended?.code ?? 'ok', tunnel: closedWith && (closedWith as ServiceError).code };
        }
        server.forceShutdown();
        const error = await failed;
        const closedWith = (await tunnel.closed) as ServiceError | undefined;
        echo.close();
        connection.close();
        // grpc-js itself reports the tunnel RPC as CANCELLED (the server's RST_STREAM)
        // or UNAVAILABLE (the dropped connection), whichever it handles first: either is right.
        const lost = closedWith?.code === status.CANCELLED || closedWith?.code === status.UNAVAILABLE;
        return { call: error?.code, tunnel: lost ? 'lost' : closedWith?.code };
      });
      if (how === 'forceShutdown') assert.deepEqual(observed, { call: status.UNAVAILABLE, tunnel: 'lost' });
      else assert.deepEqual(observed, { call: 'ok', tunnel: undefined });
    });
  }

  it('nobody listening: UNAVAILABLE', async () => {
    // A port that was just free: bind, note it, close.
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const address = `127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const code = await same(bothWays(insecure, {}), async (dial) => {
      const connection = dial(address);
      const err = await rejection(openTunnel(connection));
      connection.close();
      return err.code;
    });
    assert.equal(code, status.UNAVAILABLE);
  });

  it('a server that never completes the connection: UNAVAILABLE after connectTimeoutMs, and the next tunnel dials again', async () => {
    // Accepts TCP and says nothing, so a TLS handshake never finishes (as a
    // peer that drops packets leaves a dial waiting for the system's timeout).
    const sockets: Socket[] = [];
    const silent = createNetServer((socket) => sockets.push(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const connection = new TunnelConnection(address, { tls: true, connectTimeoutMs: 200 });
    try {
      const first = await rejection(openTunnel(connection));
      assert.equal(first.code, status.UNAVAILABLE);
      assert.match(first.details, /connection timed out after 200 ms/);
      const second = await rejection(openTunnel(connection));
      assert.equal(second.code, status.UNAVAILABLE);
      assert.equal(sockets.length, 2, 'one connection per attempt');
      assert.throws(() => new TunnelConnection(address, { connectTimeoutMs: 0 }), RangeError);
    } finally {
      connection.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('TunnelConnection: one session for many tunnels', () => {
  /** A tunnel server with the echo service (afterEach stops it). */
  async function echoServer(): Promise<string> {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    return (await startServer((s) => handler.register(s))).address;
  }

  it('many tunnels on one session add no listeners per tunnel to it (no MaxListenersExceededWarning)', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    const connection = new TunnelConnection(await echoServer());
    const tunnels = await Promise.all(Array.from({ length: 30 }, () => openTunnel(connection)));
    for (const tunnel of tunnels) tunnel.close();
    await Promise.all(tunnels.map((t) => t.closed));
    connection.close();
    // Warnings are emitted on the next tick after the listener that trips them.
    await new Promise<void>((resolve) => setImmediate(resolve));
    process.off('warning', onWarning);
    assert.deepEqual(warnings, []);
  });

  it('tunnels share the session; after close() no tunnel opens (UNAVAILABLE)', async () => {
    const connection = new TunnelConnection(await echoServer());
    const [a, b] = await Promise.all([openTunnel(connection), openTunnel(connection)]);
    assert.equal(a.peer, b.peer, 'one connection, one local port seen by the server');
    for (const tunnel of [a, b]) {
      const echo = new EchoClient('t', insecure, { channelOverride: tunnel });
      assert.equal((await unary(echo, Buffer.from('x'))).error, null);
      echo.close();
    }
    a.close();
    b.close();
    await Promise.all([a.closed, b.closed]);
    connection.close();
    const err = await rejection(openTunnel(connection));
    assert.equal(err.code, status.UNAVAILABLE);
  });
});

describe('TunnelConnection: the server going away', () => {
  /** Resolves when `connection` stops taking new tunnels: a grpc-js channel leaving READY, or 'disconnect'. */
  function goingAway(connection: Client | TunnelConnection): Promise<string> {
    if (connection instanceof TunnelConnection) {
      return once(connection, 'disconnect').then(([reason]) => `disconnect ${reason}`);
    }
    const channel = connection.getChannel();
    return new Promise((resolve) => {
      const watch = () => {
        const state = channel.getConnectivityState(false);
        if (state !== connectivityState.READY) resolve('left READY');
        else channel.watchConnectivityState(state, Date.now() + 60_000, watch);
      };
      watch();
    });
  }

  it('a server shutting down gracefully is noticed at its GOAWAY, while a call on the tunnel still runs, as over grpc-js', async () => {
    const observed = await same(bothWays(insecure, {}), async (dial) => {
      const handler = new TunnelServiceHandler();
      const { server, address } = await startServer((s) => handler.register(s));
      const connection = dial(address);
      const seen: EchoObservations = { cancelled: [] };
      const reverse = new ReverseTunnelServer(connection);
      reverse.addService(EchoService, echoImplementation(seen));
      const opened = once(handler, 'reverseTunnelOpen');
      const serving = reverse.serve();
      await opened;
      const noticed = goingAway(connection);
      const echo = new EchoClient('pool', insecure, { channelOverride: handler.asChannel() });
      const held = new Metadata();
      held.set('x-hold', '1');
      let callEnded = false;
      const call = unary(echo, Buffer.from('finishes'), held).finally(() => {
        callEnded = true;
      });
      await handlerStarted(seen, 'unary');
      // As the gateway stops: the handler drains its tunnels, the server sends GOAWAY.
      const stopped = Promise.all([
        handler.tryShutdown(),
        new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
      ]);
      const signal = await noticed;
      const whileRunning = !callEnded;
      release(seen);
      const result = await call;
      await Promise.all([serving, stopped]);
      echo.close();
      connection.close();
      return {
        whileRunning,
        call: [result.error, result.value?.toString()],
        signal: signal === 'disconnect goaway' || signal === 'left READY',
      };
    });
    assert.deepEqual(observed, { whileRunning: true, call: [null, 'finishes'], signal: true });
  });

  it("'disconnect' says 'closed' for a lost connection, once per connection, and nothing for one never made", async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const first = await startServer((s) => handler.register(s));
    const connection = new TunnelConnection(first.address);
    const reasons: string[] = [];
    connection.on('disconnect', (reason) => reasons.push(reason));
    const tunnel = await openTunnel(connection);
    const closed = once(connection, 'disconnect');
    first.server.forceShutdown();
    await Promise.all([closed, tunnel.closed]);
    // The server back on its port; the next tunnel dials a new connection, told about on its own.
    await startServer((s) => handler.register(s), { port: Number(first.address.split(':')[1]) });
    const again = await openTunnel(connection);
    const gone = once(connection, 'disconnect');
    again.close();
    await again.closed;
    connection.close();
    await gone;
    assert.equal(reasons.length, 2);
    assert.ok(['closed', 'goaway'].includes(reasons[0] as string), `first: ${reasons[0]}`);
    assert.equal(reasons[1], 'closed', 'close() ends the connection');

    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const nowhere = `127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const never = new TunnelConnection(nowhere);
    never.on('disconnect', (reason) => assert.fail(`a connection never made said ${reason}`));
    const err = await rejection(openTunnel(never));
    never.close();
    assert.equal(err.code, status.UNAVAILABLE);
  });
});

describe('TunnelConnection and the process', () => {
  it('a connection without tunnels does not keep the process alive, as a grpc-js client does not', async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const { address } = await startServer((s) => handler.register(s));
    const child = fileURLToPath(new URL('./idle-exit-child.js', import.meta.url));
    const exits = await Promise.all(
      ['grpc-js', 'own'].map(async (way) => {
        const proc = spawn(process.execPath, [child, address, way], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        proc.stdout.on('data', (b: Buffer) => {
          out += b.toString();
        });
        // A bound, not a synchronisation: a process that hangs is killed and reported.
        const guard = setTimeout(() => proc.kill('SIGKILL'), 20_000);
        const [code, signal] = (await once(proc, 'exit')) as [number | null, string | null];
        clearTimeout(guard);
        return { way, code, signal, out: out.trim() };
      }),
    );
    for (const exit of exits) assert.deepEqual(exit, { way: exit.way, code: 0, signal: null, out: '{"error":null}' });
  });
});

describe('the rules under the raw tunnel RPC', () => {
  it('closed streams map to grpc-js’s statuses', () => {
    const cases: Array<[Parameters<typeof statusOfClosedStream>[0], status]> = [
      [{ rstCode: h2.NGHTTP2_NO_ERROR, connectionDropped: false }, status.INTERNAL],
      [{ rstCode: h2.NGHTTP2_NO_ERROR, httpStatus: 404, connectionDropped: false }, status.UNIMPLEMENTED],
      [{ rstCode: h2.NGHTTP2_REFUSED_STREAM, connectionDropped: false }, status.UNAVAILABLE],
      [{ rstCode: h2.NGHTTP2_CANCEL, connectionDropped: false }, status.CANCELLED],
      [{ rstCode: h2.NGHTTP2_CANCEL, connectionDropped: true }, status.UNAVAILABLE],
      [{ rstCode: h2.NGHTTP2_ENHANCE_YOUR_CALM, connectionDropped: false }, status.RESOURCE_EXHAUSTED],
      [{ rstCode: h2.NGHTTP2_INADEQUATE_SECURITY, connectionDropped: false }, status.PERMISSION_DENIED],
      [{ rstCode: h2.NGHTTP2_INTERNAL_ERROR, connectionDropped: false }, status.INTERNAL],
      [
        {
          rstCode: h2.NGHTTP2_INTERNAL_ERROR,
          connectionDropped: true,
          internalError: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
        },
        status.UNAVAILABLE,
      ],
      [{ rstCode: h2.NGHTTP2_PROTOCOL_ERROR, connectionDropped: false }, status.INTERNAL],
    ];
    for (const [closed, code] of cases) assert.equal(statusOfClosedStream(closed).code, code, JSON.stringify(closed));
    assert.deepEqual(statusOfHttpCode(429), { code: status.UNAVAILABLE, details: 'Received HTTP status code 429' });
    assert.equal(statusOfHttpCode(500).code, status.UNKNOWN);
    assert.equal(statusOfHttpCode(400).code, status.INTERNAL);
    assert.equal(statusOfHttpCode(403).code, status.PERMISSION_DENIED);
  });

  it('grpc-timeout: the smallest unit that fits 8 digits, rounded up; none for no deadline', () => {
    assert.equal(grpcTimeout(1000.5, 0), '1001m');
    assert.equal(grpcTimeout(99_999_999, 0), '99999999m');
    assert.equal(grpcTimeout(100_000_000, 0), '100000S');
    assert.equal(grpcTimeout(-5, 0), '0m');
    assert.equal(grpcTimeout(Number.POSITIVE_INFINITY, 0), undefined);
    // Rounding up can reach nine digits; the next unit is taken then (grpc-js
    // would write 100000000m, which the header's grammar does not allow).
    assert.equal(grpcTimeout(99_999_999.5, 0), '100000S');
    // The same encoder writes the header of calls inside a tunnel, from nanoseconds up, as Go does.
    assert.equal(encodeTimeout(50), '50000000n');
    assert.equal(encodeTimeout(1000.5), '1000500u');
    assert.equal(encodeTimeout(100_000), '100000m');
    assert.equal(encodeTimeout(1e12), '16666667M');
    assert.equal(encodeTimeout(1e15), '99999999H');
  });

  it('framing: messages split and joined anyhow come out whole; too large and compressed are refused', () => {
    const messages = [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(70_000, 7)];
    const wire = Buffer.concat(messages.map(frameMessage));
    for (const piece of [1, 3, 5, 4096, wire.length]) {
      const reader = new MessageReader(1 << 20);
      const out: Buffer[] = [];
      for (let at = 0; at < wire.length; at += piece) out.push(...reader.push(wire.subarray(at, at + piece)));
      assert.deepEqual(out, messages, `pieces of ${piece}`);
      assert.equal(reader.pending, false);
    }
    assert.throws(() => new MessageReader(10).push(frameMessage(Buffer.alloc(11))), /larger than max \(11 vs 10\)/);
    const compressed = frameMessage(Buffer.from('x'));
    compressed[0] = 1;
    assert.throws(() => new MessageReader(10).push(compressed), /compressed/);
  });

  it('grpc-message: decoding undoes the encoder; malformed text is kept as it came', () => {
    for (const text of ['plain', ' spaced out ', '100% sure', 'naïve ☃', 'a\nb']) {
      assert.equal(decodeGrpcMessage(encodeGrpcMessage(text)), text);
    }
    assert.equal(decodeGrpcMessage('bad %zz escape'), 'bad %zz escape');
  });
});
