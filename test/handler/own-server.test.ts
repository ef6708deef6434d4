// The handler serving tunnel RPCs on a node:http2 server of the user's
// (handleHttp2Stream / serveHttp2) must be indistinguishable, for a client,
// from the same handler registered on a grpc-js Server: every scenario runs
// on both and the observations are compared.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import { afterEach, describe, it } from 'node:test';
import { deflateSync, gzipSync } from 'node:zlib';
import {
  type Client,
  credentials,
  Metadata,
  ServerCredentials,
  type ServiceError,
  status as Status,
} from '@grpc/grpc-js';
import {
  openTunnel,
  ReverseTunnelServer,
  type TunnelChannel,
  TunnelConnection,
  type TunnelInfo,
  TunnelServiceHandler,
  type TunnelServiceHandlerOptions,
} from 'grpctunnel';
import { ClientToServer } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import { statusError } from '#grpctunnel/grpc/errors.js';
import { decodeGrpcMessage } from '#grpctunnel/grpc/status.js';
import { OPEN_REVERSE_TUNNEL_PATH, OPEN_TUNNEL_PATH } from '#grpctunnel/grpc/tunnel-service.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import {
  EchoClient,
  type EchoObservations,
  EchoService,
  echoImplementation,
  handlerCancelled,
  handlerStarted,
} from '../helpers/echo-service.js';
import { startOwnServer } from '../helpers/own-server.js';
import { startServer, stopAllServers, stopServer } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

type Kind = 'grpc-js' | 'own';

interface Served {
  address: string;
  handler: TunnelServiceHandler;
  seen: EchoObservations;
  /** grpc-js: forceShutdown; own: every session destroyed and the server closed. */
  force(): Promise<void>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await stopAllServers();
});

/** The handler (with the echo service for forward tunnels) on a server of `kind`. */
async function serve(kind: Kind, options: TunnelServiceHandlerOptions = {}, tls?: { pki: TestPki }): Promise<Served> {
  const seen: EchoObservations = { cancelled: [] };
  const handler = new TunnelServiceHandler(options);
  handler.addService(EchoService, echoImplementation(seen));
  if (kind === 'grpc-js') {
    const creds = tls
      ? ServerCredentials.createSsl(
          tls.pki.ca,
          [{ private_key: tls.pki.server.key, cert_chain: tls.pki.server.cert }],
          true,
        )
      : ServerCredentials.createInsecure();
    const { server, address } = await startServer((s) => handler.register(s), { credentials: creds });
    return { address, handler, seen, force: () => stopServer(server) };
  }
  const server = await startOwnServer(
    handler,
    tls && {
      key: tls.pki.server.key,
      cert: tls.pki.server.cert,
      ca: tls.pki.ca,
      requestCert: true,
      rejectUnauthorized: true,
    },
  );
  const force = async () => {
    handler.forceShutdown();
    await server.stop();
  };
  cleanups.push(force);
  return { address: server.address, handler, seen, force };
}

/** What a raw HTTP/2 client sees of one request: response headers and trailers, transport headers left out. */
interface RawAnswer {
  status: number | undefined;
  headers: Record<string, unknown>;
  trailers: Record<string, unknown>;
  /** The RST_STREAM code the stream closed with (0 for a clean end). */
  rstCode: number;
}

const TRANSPORT = new Set(['date']);
/**
 * Headers as a client reads them: grpc-message decoded (grpc-js's server
 * escapes with encodeURI, the library with the gRPC spec's narrower set, e.g.
 * '"' stays as it is: every gRPC client decodes both to the same text).
 * grpc-js 1.14.4 (the lowest the peer range admits, which CI also runs)
 * says only "Error deserializing request"; 1.14.7 adds the reason, as the
 * own server does.
 */
function plain(headers: http2.IncomingHttpHeaders): Record<string, unknown> {
  const message = (v: unknown) => decodeGrpcMessage(String(v)).replace(/^(Error deserializing request):.*$/, '$1');
  return Object.fromEntries(
    Object.entries(headers)
      .filter(([k]) => !TRANSPORT.has(k))
      .map(([k, v]) => [k, k === 'grpc-message' ? message(v) : v])
      .sort(([a], [b]) => String(a).localeCompare(String(b))),
  );
}

/**
 * Sends one request by hand: `headers` on `path`, then `body` (already
 * framed), then (unless `keepOpen`) the end of the request; `act` runs once
 * the response headers are in (e.g. to reset the stream).
 */
async function rawRequest(
  address: string,
  path: string,
  options: {
    headers?: http2.OutgoingHttpHeaders;
    body?: Buffer;
    keepOpen?: boolean;
    act?: (stream: http2.ClientHttp2Stream) => void;
  } = {},
): Promise<RawAnswer> {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  try {
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...options.headers,
    });
    stream.on('error', () => {});
    const answer: RawAnswer = { status: undefined, headers: {}, trailers: {}, rstCode: 0 };
    stream.on('response', (headers) => {
      answer.status = headers[':status'];
      answer.headers = plain(headers);
      options.act?.(stream);
    });
    stream.on('trailers', (trailers) => {
      answer.trailers = plain(trailers);
    });
    // The server finished: end this side too, so the stream closes.
    stream.on('end', () => {
      if (!stream.writableEnded) stream.end();
    });
    stream.resume();
    if (options.body) stream.write(options.body);
    if (!options.keepOpen) stream.end();
    await once(stream, 'close');
    answer.rstCode = stream.rstCode ?? 0;
    return answer;
  } finally {
    session.close();
  }
}

/** Runs `scenario` on both kinds of server and asserts the observations are equal; returns them. */
async function same<T>(scenario: (kind: Kind) => Promise<T>): Promise<T> {
  const [onGrpcJs, onOwn] = [await scenario('grpc-js'), await scenario('own')];
  assert.deepEqual(onOwn, onGrpcJs);
  return onGrpcJs;
}

/** What a client can see of a TunnelInfo (the peer's port differs per connection). */
function infoShape(info: TunnelInfo | undefined): unknown {
  if (!info) return undefined;
  const md = info.metadata.getMap();
  delete md['user-agent'];
  const auth = info.authContext as {
    transportSecurityType?: string;
    sslPeerCertificate?: { subject?: { CN?: string } };
  };
  return {
    kind: info.kind,
    metadata: md,
    peer: info.peer.replace(/:\d+$/, ':PORT'),
    host: info.host.replace(/:\d+$/, ':PORT'),
    security: auth.transportSecurityType,
    peerCN: auth.sslPeerCertificate?.subject?.CN,
  };
}

const unary = (echo: EchoClient, body: Buffer) =>
  new Promise<Buffer>((resolve, reject) =>
    echo.unary(body, (err: ServiceError | null, reply: Buffer) => (err ? reject(err) : resolve(reply))),
  );

describe('the handler on a node:http2 server of its own, against the same handler on grpc-js', () => {
  it('a forward tunnel: calls flow, and the service sees the same TunnelInfo', async () => {
    const seen = await same(async (kind) => {
      const served = await serve(kind);
      for (const connect of ['grpc-js', 'own-connection'] as const) {
        const connection =
          connect === 'grpc-js'
            ? new EchoClient(served.address, credentials.createInsecure())
            : (new TunnelConnection(served.address) as unknown as Client);
        const metadata = new Metadata();
        metadata.set('x-tenant', 'blue');
        const tunnel = await openTunnel(connection, { metadata });
        const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
        const reply = await unary(echo, Buffer.from('hello'));
        assert.equal(reply.toString(), 'hello');
        const big = Buffer.alloc(3 * 1024 * 1024, 7);
        assert.ok((await unary(echo, big)).equals(big), 'a 3 MiB message crosses in chunks');
        tunnel.close();
        connection.close();
      }
      return { info: infoShape(served.seen.lastTunnel), openTunnels: served.handler.openTunnels };
    });
    assert.equal((seen.info as { metadata: Record<string, unknown> }).metadata['x-tenant'], 'blue');
  });

  it('a reverse tunnel: the pool calls it, and the handler sees the same TunnelInfo', async () => {
    await same(async (kind) => {
      const served = await serve(kind, { affinityKey: (t) => t.metadata.get('x-key')[0] });
      const connection = new EchoClient(served.address, credentials.createInsecure());
      const reverse = new ReverseTunnelServer(connection);
      const targetSeen: EchoObservations = { cancelled: [] };
      reverse.addService(EchoService, echoImplementation(targetSeen));
      const opened = once(served.handler, 'reverseTunnelOpen');
      const metadata = new Metadata();
      metadata.set('x-key', 'k1');
      const result = reverse.serve({ metadata });
      const [tunnel] = (await opened) as [{ info: TunnelInfo; key: unknown }];
      const echo = new EchoClient('pool', credentials.createInsecure(), {
        channelOverride: served.handler.keyAsChannel('k1'),
      });
      assert.equal((await unary(echo, Buffer.from('back'))).toString(), 'back');
      reverse.stop();
      const ended = await result;
      connection.close();
      return { info: infoShape(tunnel.info), key: tunnel.key, ended: ended.error?.message };
    });
  });

  it('a client channel that compresses its messages (gzip): the tunnel works the same', async () => {
    await same(async (kind) => {
      const served = await serve(kind);
      const connection = new EchoClient(served.address, credentials.createInsecure(), {
        'grpc.default_compression_algorithm': 2, // gzip
      });
      const tunnel = await openTunnel(connection, {});
      const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
      const body = Buffer.alloc(100_000, 'compressible ');
      const reply = await unary(echo, body);
      tunnel.close();
      connection.close();
      return { echoed: reply.equals(body), info: infoShape(served.seen.lastTunnel) };
    });
  });

  it('mTLS: the client certificate reaches TunnelInfo on both', async () => {
    const pki = makePki(['agent-7']);
    await same(async (kind) => {
      const served = await serve(kind, {}, { pki });
      const client = pki.clients['agent-7'];
      assert.ok(client);
      const connection = new EchoClient(
        `localhost:${served.address.split(':')[1]}`,
        credentials.createSsl(pki.ca, client.key, client.cert),
      );
      const tunnel = await openTunnel(connection, {});
      const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
      await unary(echo, Buffer.from('x'));
      tunnel.close();
      connection.close();
      return infoShape(served.seen.lastTunnel);
    });
  });

  it('how a tunnel RPC ends, byte for byte in headers and trailers', async () => {
    const frame = (size: number) => {
      const b = Buffer.alloc(5);
      b.writeUInt32BE(size, 1);
      return b;
    };
    /** One message with the compressed flag set (the bytes as given: compress them first). */
    const compressed = (body: Buffer) => {
      const head = Buffer.alloc(5);
      head[0] = 1;
      head.writeUInt32BE(body.length, 1);
      return Buffer.concat([head, body]);
    };
    // A window update for a stream that does not exist: read, ignored, no answer.
    const frameBytes = Buffer.from(
      ClientToServer.encode({ streamId: 1, frame: { $case: 'windowUpdate', value: 100 } }).finish(),
    );
    const gzip = { 'grpc-encoding': 'gzip' };
    // Each case: handler options, then the request.
    const cases: Array<[string, TunnelServiceHandlerOptions, string, Parameters<typeof rawRequest>[2]]> = [
      ['half-close at once', {}, OPEN_TUNNEL_PATH, {}],
      ['reverse refused', { noReverseTunnels: true }, OPEN_REVERSE_TUNNEL_PATH, {}],
      [
        'affinity key refuses',
        {
          affinityKey: () => {
            throw statusError(Status.PERMISSION_DENIED, 'not you', new Metadata());
          },
        },
        OPEN_REVERSE_TUNNEL_PATH,
        {},
      ],
      ['deadline', {}, OPEN_TUNNEL_PATH, { headers: { 'grpc-timeout': '100m' }, keepOpen: true }],
      ['bad deadline', {}, OPEN_TUNNEL_PATH, { headers: { 'grpc-timeout': 'soon' }, keepOpen: true }],
      // grpc-js reads the value leniently (space before the unit, no anchors): the same here.
      ['lenient deadline', {}, OPEN_TUNNEL_PATH, { headers: { 'grpc-timeout': '100 m' }, keepOpen: true }],
      ['over the receive limit', {}, OPEN_TUNNEL_PATH, { body: frame(5 * 1024 * 1024), keepOpen: true }],
      ['not a tunnel frame', {}, OPEN_TUNNEL_PATH, { body: Buffer.from([0, 0, 0, 0, 2, 0xff, 0xff]) }],
      // Compressed tunnel frames (a client channel configured to compress), read as grpc-js reads them.
      ['gzip frame, then half-close', {}, OPEN_TUNNEL_PATH, { headers: gzip, body: compressed(gzipSync(frameBytes)) }],
      [
        'deflate frame',
        {},
        OPEN_TUNNEL_PATH,
        { headers: { 'grpc-encoding': 'deflate' }, body: compressed(deflateSync(frameBytes)) },
      ],
      ['compressed flag, identity', {}, OPEN_TUNNEL_PATH, { body: compressed(frameBytes) }],
      [
        'unknown encoding',
        {},
        OPEN_TUNNEL_PATH,
        { headers: { 'grpc-encoding': 'br' }, body: compressed(frameBytes), keepOpen: true },
      ],
      [
        'corrupt gzip',
        {},
        OPEN_TUNNEL_PATH,
        { headers: gzip, body: compressed(Buffer.from('not gzip')), keepOpen: true },
      ],
      [
        'decompresses past the limit',
        {},
        OPEN_TUNNEL_PATH,
        { headers: gzip, body: compressed(gzipSync(Buffer.alloc(5 * 1024 * 1024))), keepOpen: true },
      ],
      ['not gRPC', {}, OPEN_TUNNEL_PATH, { headers: { 'content-type': 'text/plain' } }],
      ['another method', {}, '/other.Service/Method', {}],
      ['client resets', {}, OPEN_TUNNEL_PATH, { keepOpen: true, act: (s) => s.close(http2.constants.NGHTTP2_CANCEL) }],
    ];
    for (const [name, options, path, request] of cases) {
      await same(async (kind) => {
        const served = await serve(kind, options);
        const answer = await rawRequest(served.address, path, request);
        // The handler has let go of the tunnel either way (it has no event for a forward tunnel's end).
        await until(() => served.handler.openTunnels === 0, `${name}: the tunnel is forgotten`);
        await served.force();
        return { name, ...answer };
      });
    }
  });

  it('a draining handler refuses new tunnels, and ends an idle one with OK', async () => {
    await same(async (kind) => {
      const served = await serve(kind);
      const connection = new EchoClient(served.address, credentials.createInsecure());
      const tunnel: TunnelChannel = await openTunnel(connection, {});
      const closed = new Promise<string | undefined>((resolve) =>
        tunnel.once('close', (error?: Error) => resolve(error?.message)),
      );
      await served.handler.tryShutdown();
      const refused = await rawRequest(served.address, OPEN_TUNNEL_PATH);
      const closedWith = await closed;
      connection.close();
      return { refused, closedWith };
    });
  });

  it('forceShutdown with a call running: the caller sees CANCELLED, the handler the cancel', async () => {
    await same(async (kind) => {
      const served = await serve(kind);
      const connection = new EchoClient(served.address, credentials.createInsecure());
      const tunnel = await openTunnel(connection, {});
      const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
      const call = echo.stall();
      const ended = new Promise<{ code: number; details: string }>((resolve) =>
        call.on('error', (e: ServiceError) => resolve({ code: e.code, details: e.details })),
      );
      const started = handlerStarted(served.seen, 'stall');
      const cancelled = handlerCancelled(served.seen, 'stall');
      call.write(Buffer.from('x'));
      await started;
      served.handler.forceShutdown();
      const status = await ended;
      await cancelled;
      tunnel.close();
      connection.close();
      return { ...status, handlerSaw: served.seen.cancelled };
    });
  });

  it('serveHttp2 stops listening when its signal aborts, and checks its options', async () => {
    const handler = new TunnelServiceHandler();
    const server = http2.createServer();
    const controller = new AbortController();
    handler.serveHttp2(server, { signal: controller.signal });
    assert.equal(server.listenerCount('stream'), 1);
    controller.abort();
    assert.equal(server.listenerCount('stream'), 0);
    handler.serveHttp2(server, { signal: AbortSignal.abort() });
    assert.equal(server.listenerCount('stream'), 0, 'an aborted signal: nothing to serve');
    assert.throws(
      () => handler.serveHttp2(server, { signal: {} as AbortSignal }),
      (e: unknown) => e instanceof TypeError && /must be an AbortSignal/.test(e.message),
    );
  });

  it('handleHttp2Stream takes only tunnel RPCs: every other stream is left to the caller', async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const server = http2.createServer();
    server.on('stream', (stream, headers) => {
      if (handler.handleHttp2Stream(stream, headers)) return;
      stream.respond({ ':status': 404, 'x-answered-by': 'the user' }, { endStream: true });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const other = await rawRequest(address, '/other.Service/Method');
    assert.equal(other.status, 404);
    assert.equal(other.headers['x-answered-by'], 'the user');
    const connection = new TunnelConnection(address);
    const tunnel = await openTunnel(connection, {});
    const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
    assert.equal((await unary(echo, Buffer.from('mixed'))).toString(), 'mixed');
    tunnel.close();
    connection.close();
  });
});
