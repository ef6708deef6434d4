// Who is calling: the tunnel's metadata, peer and TLS identity reach tunneled
// handlers and interceptors; client and server interceptors work across
// tunnels; the reverse tunnel server can authenticate the network server.
import assert from 'node:assert/strict';
import { afterEach, before, describe, it } from 'node:test';
import {
  CallCredentials,
  credentials,
  InterceptingCall,
  type Interceptor,
  Metadata,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  status,
} from '@grpc/grpc-js';
import {
  createTunnelClient,
  getTunnelChannel,
  getTunnelInfo,
  openTunnel,
  ReverseTunnelServer,
  TunnelServiceHandler,
} from 'grpctunnel';
import { unary } from '../helpers/calls.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import { EchoClient, type EchoObservations, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { forwardFixture, reverseFixture, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

/** A server interceptor that admits a tunneled call only if its tunnel presented the right token. */
function tunnelAuth(read: (call: ServerInterceptingCallInterface) => string | undefined): ServerInterceptor {
  return (_method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, forward) => {
            const token = read(call);
            if (token === undefined)
              call.sendStatus({ code: status.UNAUTHENTICATED, details: 'no tunnel credentials' });
            else if (token !== 'good')
              call.sendStatus({ code: status.PERMISSION_DENIED, details: 'tunnel not allowed' });
            else forward(metadata);
          },
        }),
    });
}

const withToken = (token?: string) => {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
};
const bearer = (call: ServerInterceptingCallInterface) =>
  getTunnelInfo(call)
    ?.metadata.get('authorization')[0]
    ?.toString()
    .replace(/^Bearer /, '');

describe('forward tunnels: identity and interceptors', () => {
  it('handlers see the tunnel RPC metadata and peer', async () => {
    const f = await forwardFixture({}, { metadata: withToken('abc') });
    await unary(f.echo, Buffer.from('x'));
    assert.equal(f.seen.lastTunnel?.kind, 'forward');
    assert.equal(f.seen.lastTunnel?.metadata.get('authorization')[0], 'Bearer abc');
    assert.match(f.seen.lastTunnel?.peer ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(f.seen.lastPeer, f.seen.lastTunnel?.peer);
    await f.close();
  });

  it('a server interceptor rejects tunneled calls by tunnel identity', async () => {
    for (const [token, code] of [
      [undefined, status.UNAUTHENTICATED],
      ['bad', status.PERMISSION_DENIED],
      ['good', status.OK],
    ] as const) {
      const f = await forwardFixture({ interceptors: [tunnelAuth(bearer)] }, { metadata: withToken(token) });
      const r = await unary(f.echo, Buffer.from('x'));
      assert.equal(r.error?.code ?? status.OK, code, `token ${token}`);
      await f.close();
    }
  });

  it('client interceptors run on clients over a tunnel, and calls know their tunnel', async () => {
    const f = await forwardFixture();
    const addHeader: Interceptor = (options, next) =>
      new InterceptingCall(next(options), {
        start: (metadata, listener, start) => {
          metadata.set('x-echo-added', 'by-interceptor');
          start(metadata, listener);
        },
      });
    const client = createTunnelClient(EchoClient, f.tunnel, { interceptors: [addHeader] });
    const headers = await new Promise<Metadata>((resolve, reject) => {
      const call = client.unary(Buffer.from('x'), (err: Error | null) => {
        if (err) reject(err);
        assert.equal(getTunnelChannel(call), f.tunnel);
      });
      call.on('metadata', resolve);
    });
    assert.equal(headers.get('x-echo-added')[0], 'by-interceptor');
    await f.close();
  });
});

describe('per-call credentials through a tunnel', () => {
  it('adds the metadata of call credentials, and fails UNAVAILABLE when they fail', async () => {
    const f = await forwardFixture();
    const perCall = CallCredentials.createFromMetadataGenerator((options, callback) => {
      const md = new Metadata();
      md.set('authorization', `Bearer for ${options.method_name}`);
      callback(null, md);
    });
    const ok = await unary(f.echo, Buffer.from('x'), new Metadata(), { credentials: perCall });
    assert.equal(ok.error, null);
    assert.equal(f.seen.lastMetadata?.get('authorization')[0], 'Bearer for Unary');
    const stream = f.echo.clientStream(new Metadata(), { credentials: perCall }, () => undefined);
    stream.write(Buffer.from('held until the credentials are ready'));
    stream.end();
    await new Promise((resolve) => stream.on('status', resolve));
    assert.equal(f.seen.lastMetadata?.get('authorization')[0], 'Bearer for ClientStream');
    const broken = CallCredentials.createFromMetadataGenerator((_options, callback) => callback(new Error('no token')));
    const failed = await unary(f.echo, Buffer.from('x'), new Metadata(), { credentials: broken });
    assert.equal(failed.error?.code, status.UNAVAILABLE);
    assert.match(failed.error?.details ?? '', /no token/);
    await f.close();
  });
});

describe('reverse tunnels: identity, authentication and interceptors', () => {
  it('the affinity key sees what a server interceptor added to the tunnel RPC metadata', async () => {
    // The interceptor on the network server turns a token into an agent id.
    const idFromToken: ServerInterceptor = (_method, call) =>
      new ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (metadata, forward) => {
              const token = metadata.get('authorization')[0];
              if (token === 'Bearer t-1') metadata.set('x-agent-id', 'agent-1');
              forward(metadata);
            },
          }),
      });
    const seen: EchoObservations = { cancelled: [] };
    const handler = new TunnelServiceHandler({ affinityKey: (t) => t.metadata.get('x-agent-id')[0] });
    const { server, address } = await startServer((s) => handler.register(s), {
      serverOptions: { interceptors: [idFromToken] },
    });
    const connection = new EchoClient(address, credentials.createInsecure());
    const reverse = new ReverseTunnelServer(connection);
    reverse.addService(EchoService, echoImplementation(seen));
    const served = reverse.serve({ metadata: withToken('t-1') });
    await handler.keyAsChannel('agent-1').waitForReady({ timeout: 5000 });
    const client = new EchoClient('a', credentials.createInsecure(), {
      channelOverride: handler.keyAsChannel('agent-1'),
    });
    assert.equal((await unary(client, Buffer.from('hi'))).value?.toString(), 'hi');
    assert.equal(seen.lastTunnel?.kind, 'reverse');
    reverse.stop();
    await served;
    connection.close();
    await stopServer(server);
  });

  it('authenticates the network server from its response headers; handlers see the identity', async () => {
    const gatewayToken =
      (token: string): ServerInterceptor =>
      (_method, call) =>
        new ServerInterceptingCall(call, {
          sendMetadata: (metadata, next) => {
            metadata.set('x-gateway-token', token);
            next(metadata);
          },
        });
    const authenticate = (headers: Metadata) => {
      if (headers.get('x-gateway-token')[0] !== 'real-gateway') throw new Error('unknown gateway');
      return { gateway: 'gw-1' };
    };
    for (const token of ['real-gateway', 'impostor']) {
      const seen: EchoObservations = { cancelled: [] };
      const handler = new TunnelServiceHandler();
      const opened: string[] = [];
      handler.on('reverseTunnelOpen', () => opened.push('open'));
      const { server, address } = await startServer((s) => handler.register(s), {
        serverOptions: { interceptors: [gatewayToken(token)] },
      });
      const connection = new EchoClient(address, credentials.createInsecure());
      const reverse = new ReverseTunnelServer(connection, { authenticate });
      reverse.addService(EchoService, echoImplementation(seen));
      const served = reverse.serve();
      if (token === 'real-gateway') {
        await handler.asChannel().waitForReady({ timeout: 5000 });
        const client = new EchoClient('a', credentials.createInsecure(), { channelOverride: handler.asChannel() });
        assert.equal((await unary(client, Buffer.from('x'))).error, null);
        assert.deepEqual(seen.lastTunnel?.identity, { gateway: 'gw-1' });
        assert.equal(seen.lastTunnel?.responseHeaders?.get('x-gateway-token')[0], 'real-gateway');
        reverse.stop();
        const result = await served;
        assert.deepEqual(result, { started: true });
      } else {
        const result = await served;
        assert.equal(result.started, false);
        assert.equal(result.error?.code, status.UNAUTHENTICATED);
        assert.match(result.error?.details ?? '', /unknown gateway/);
        assert.deepEqual(opened, [], 'the handler never got a usable tunnel');
      }
      connection.close();
      await stopServer(server);
    }
  });

  it('server interceptors on the reverse tunnel server see the tunnel identity', async () => {
    const byIdentity = tunnelAuth((call) => (getTunnelInfo(call)?.identity as { token?: string } | undefined)?.token);
    for (const [token, code] of [
      ['bad', status.PERMISSION_DENIED],
      ['good', status.OK],
    ] as const) {
      const f = await reverseFixture({}, { interceptors: [byIdentity], authenticate: () => ({ token }) });
      const r = await unary(f.echo, Buffer.from('x'));
      assert.equal(r.error?.code ?? status.OK, code);
      await f.close();
    }
  });
});

describe('TLS and mTLS on the tunnel RPC', () => {
  let pki: TestPki;
  before(() => {
    pki = makePki(['agent-1']);
  });

  const mtlsServer = () =>
    ServerCredentials.createSsl(pki.ca, [{ private_key: pki.server.key, cert_chain: pki.server.cert }], true);
  const mtlsClient = () => credentials.createSsl(pki.ca, pki.clients['agent-1']?.key, pki.clients['agent-1']?.cert);

  it('forward: tunneled handlers see the client certificate of the tunnel', async () => {
    const seen: EchoObservations = { cancelled: [] };
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation(seen));
    const { server, address } = await startServer((s) => handler.register(s), { credentials: mtlsServer() });
    const connection = new EchoClient(address, mtlsClient());
    const tunnel = await openTunnel(connection);
    const echo = createTunnelClient(EchoClient, tunnel);
    assert.equal((await unary(echo, Buffer.from('x'))).error, null);
    const auth = seen.lastTunnel?.authContext;
    assert.equal(auth?.transportSecurityType, 'ssl');
    assert.equal(auth?.sslPeerCertificate?.subject.CN, 'agent-1');
    tunnel.close();
    connection.close();
    await stopServer(server);
  });

  it('reverse: the client certificate picks the pool, and the reverse side sees the server certificate', async () => {
    const seen: EchoObservations = { cancelled: [] };
    const handler = new TunnelServiceHandler({ affinityKey: (t) => t.authContext.sslPeerCertificate?.subject.CN });
    const { server, address } = await startServer((s) => handler.register(s), { credentials: mtlsServer() });
    const connection = new EchoClient(address, mtlsClient());
    const reverse = new ReverseTunnelServer(connection);
    reverse.addService(EchoService, echoImplementation(seen));
    const served = reverse.serve();
    const pool = handler.keyAsChannel('agent-1');
    await pool.waitForReady({ timeout: 5000 });
    const echo = new EchoClient('agent-1', credentials.createInsecure(), { channelOverride: pool });
    assert.equal((await unary(echo, Buffer.from('x'))).error, null);
    assert.equal(seen.lastTunnel?.authContext.sslPeerCertificate?.subject.CN, 'localhost');
    reverse.stop();
    await served;
    connection.close();
    await stopServer(server);
  });

  it('a client without a certificate cannot open a tunnel on an mTLS server', async () => {
    const handler = new TunnelServiceHandler();
    const { server, address } = await startServer((s) => handler.register(s), { credentials: mtlsServer() });
    const connection = new EchoClient(address, credentials.createSsl(pki.ca));
    await assert.rejects(openTunnel(connection, { callOptions: { deadline: Date.now() + 3000 } }), {
      code: status.UNAVAILABLE,
    });
    connection.close();
    await stopServer(server);
  });
});
