// The Connect transport over tunnels and pools, and Connect implementations
// served through tunnels: what the differential suite (behaviour.test.ts)
// cannot compare, or compares only loosely.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, afterEach, describe, it } from 'node:test';
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { credentials, Client as GrpcClient, Metadata } from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, type ServeResult, TunnelServiceHandler } from 'grpctunnel';
import { addConnectService, createTunnelTransport, getTunnelInfoFromContext } from 'grpctunnel/connect';
import { startServer, stopAllServers, stopServer } from '../helpers/servers.js';
import { EchoService, echoImpl, newSeen } from './echo-impl.js';
import { connectNodeEnv, ENVIRONMENTS, type Env } from './environments.js';

afterEach(stopAllServers);

/** An interceptor that adds a header and records what it sees of the call, as plain data. */
function recorder(log: unknown[]): Interceptor {
  return (next) => async (req) => {
    req.header.set('x-intercepted', 'yes');
    const entry: Record<string, unknown> = { path: new URL(req.url).pathname, stream: req.stream };
    entry.header = req.header.get('x-intercepted');
    log.push(entry);
    const res = await next(req);
    entry.echoed = res.header.get('x-intercepted');
    if (!res.stream) return res;
    return {
      ...res,
      message: (async function* () {
        let n = 0;
        for await (const m of res.message) {
          n++;
          yield m;
        }
        entry.messages = n;
        entry.trailer = res.trailer.get('x-trailer');
      })(),
    };
  };
}

async function interceptorLog(env: Env): Promise<unknown[]> {
  const log: unknown[] = [];
  const client = createClient(EchoService, env.withInterceptors([recorder(log)]));
  await client.unary({ text: 'a' });
  for await (const _ of client.serverStream({ repeat: 2 })) {
  }
  await client.clientStream(
    (async function* () {
      yield { text: 'b' };
    })(),
  );
  return log;
}

describe('Connect interceptors', () => {
  it('run around tunneled calls of every kind as around calls of connect-node', async () => {
    const reference = await connectNodeEnv();
    const expected = await interceptorLog(reference);
    await reference.close();
    assert.equal(expected.length, 3);
    for (const [name, factory] of Object.entries(ENVIRONMENTS)) {
      const env = await factory();
      try {
        assert.deepEqual(await interceptorLog(env), expected, name);
      } finally {
        await env.close();
      }
    }
  });
});

/** A server-side interceptor: records what it sees and adds a response header. */
function serverRecorder(log: unknown[]): Interceptor {
  return (next) => async (req) => {
    const entry: Record<string, unknown> = {
      method: req.method.name,
      stream: req.stream,
      got: req.header.get('x-ascii'),
    };
    log.push(entry);
    const res = await next(req);
    res.header.set('x-server-intercepted', req.method.name);
    if (!res.stream) return res;
    return {
      ...res,
      message: (async function* () {
        let n = 0;
        for await (const m of res.message) {
          n++;
          yield m;
        }
        entry.messages = n;
      })(),
    };
  };
}

async function serverInterceptorRun(transport: ReturnType<typeof createTunnelTransport>) {
  const client = createClient(EchoService, transport);
  const headers: unknown[] = [];
  const onHeader = (h: Headers) => headers.push(h.get('x-server-intercepted'));
  await client.unary({ text: 'a' }, { headers: { 'x-ascii': 'u' }, onHeader });
  for await (const _ of client.serverStream({ repeat: 3 }, { headers: { 'x-ascii': 's' }, onHeader })) {
  }
  for await (const _ of client.bidi(
    (async function* () {
      yield { text: 'b' };
    })(),
    { onHeader },
  )) {
  }
  return headers;
}

describe('Connect handlers served through tunnels', () => {
  it("run the server-side interceptors given to addConnectService, as connect-node's router runs its own", async () => {
    const expectedLog: unknown[] = [];
    const h2 = http2.createServer(
      connectNodeAdapter({
        interceptors: [serverRecorder(expectedLog)],
        routes: (r) => r.service(EchoService, echoImpl(newSeen())),
      }),
    );
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    const sessionManager = new Http2SessionManager(`http://127.0.0.1:${(h2.address() as AddressInfo).port}`);
    const log: unknown[] = [];
    const handler = new TunnelServiceHandler();
    addConnectService(handler, EchoService, echoImpl(newSeen()), { interceptors: [serverRecorder(log)] });
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new GrpcClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    try {
      const expected = await serverInterceptorRun(
        createGrpcTransport({ baseUrl: sessionManager.authority, sessionManager }),
      );
      assert.deepEqual(expected, ['Unary', 'ServerStream', 'Bidi']);
      assert.deepEqual(await serverInterceptorRun(createTunnelTransport(tunnel)), expected);
      assert.equal(expectedLog.length, 3);
      assert.deepEqual(log, expectedLog);
    } finally {
      sessionManager.abort();
      tunnel.close();
      connection.close();
      await stopServer(server);
      await new Promise((resolve) => h2.close(resolve));
    }
  });

  it('see DeadlineExceeded, not Canceled, when a call passes its deadline', async () => {
    for (const [name, factory] of Object.entries(ENVIRONMENTS)) {
      const env = await factory();
      try {
        // A first call also waits for the connection, which the server's
        // clock does not see: connect before timing anything.
        await env.client.unary({ text: 'warm' });
        for (const timeoutMs of [50, 120]) {
          // The server tells a deadline from a cancel by its own clock, which
          // starts when it reads the request: on a loaded machine that can
          // be late enough for the caller's cancel to come first. A defect
          // answers Canceled every time; load does so now and then, so a
          // few attempts each get the chance to show DeadlineExceeded.
          const answers: string[] = [];
          for (let attempt = 0; attempt < 4 && !answers.includes('DeadlineExceeded'); attempt++) {
            env.seen.rearm();
            await assert.rejects(env.client.unary({ hang: true }, { timeoutMs }), (e: unknown) => {
              assert.equal((e as ConnectError).code, Code.DeadlineExceeded, name);
              return true;
            });
            // The handler's side. On a busy machine the request may reach the
            // server after the caller gave up, or never (no event says so:
            // a bounded wait), and then there is no handler to ask.
            const left = await Promise.race([
              env.seen.hanging,
              new Promise<'never'>((resolve) => setTimeout(resolve, 5000, 'never').unref()),
            ]);
            if (left === 'never') {
              console.log(`# ${name}, ${timeoutMs} ms: the call never reached a handler`);
              answers.push('DeadlineExceeded');
              continue;
            }
            const reason = await env.seen.aborted;
            assert.ok(['DeadlineExceeded', 'Canceled'].includes(reason), `${name}, ${timeoutMs} ms: ${reason}`);
            // A cancel within 20 ms of the server's deadline (counted from the
            // request's arrival) is the caller's deadline. A request that
            // waited longer than that before its handler ran shows that this
            // machine is too busy for the clocks to say anything.
            const travelMs = left === undefined ? 0 : timeoutMs - left;
            answers.push(travelMs <= 15 ? reason : 'DeadlineExceeded');
          }
          assert.ok(answers.includes('DeadlineExceeded'), `${name}, ${timeoutMs} ms: ${answers.join(', ')}`);
        }
      } finally {
        await env.close();
      }
    }
  });

  it('do not report errors thrown after the caller left as internal errors', async () => {
    const reported: unknown[] = [];
    let threw!: () => void;
    const thrown = new Promise<void>((resolve) => {
      threw = resolve;
    });
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const handler = new TunnelServiceHandler();
    addConnectService(
      handler,
      EchoService,
      {
        async unary(_req, ctx) {
          await new Promise((resolve) => {
            ctx.signal.addEventListener('abort', resolve, { once: true });
            started();
          });
          threw();
          throw new Error('cleanup failed after the cancel');
        },
      },
      { onInternalError: (e) => reported.push(e) },
    );
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new GrpcClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    try {
      const controller = new AbortController();
      void running.then(() => controller.abort());
      await assert.rejects(
        createClient(EchoService, createTunnelTransport(tunnel)).unary({}, { signal: controller.signal }),
      );
      await thrown;
      // The handler's rejection is handled a few microtasks after it throws: let them run.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(reported, []);
    } finally {
      tunnel.close();
      connection.close();
      await stopServer(server);
    }
  });

  it('read the tunnel that carried the call from their context', async () => {
    const handler = new TunnelServiceHandler();
    const seen: unknown[] = [];
    const impl = {
      unary(_req: unknown, ctx: Parameters<typeof getTunnelInfoFromContext>[0]) {
        const info = getTunnelInfoFromContext(ctx);
        seen.push(info && { kind: info.kind, agent: info.metadata.get('x-agent')[0] });
        return { text: 'ok' };
      },
    };
    addConnectService(handler, EchoService, impl);
    const { server, address } = await startServer((s) => {
      handler.register(s);
      addConnectService(s, EchoService, impl);
    });
    const connection = new GrpcClient(address, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set('x-agent', 'forward-1');
    const tunnel = await openTunnel(connection, { metadata });
    const reverse = new ReverseTunnelServer(connection);
    addConnectService(reverse, EchoService, impl);
    const opened = once(handler, 'reverseTunnelOpen');
    const reverseMetadata = new Metadata();
    reverseMetadata.set('x-agent', 'reverse-1');
    const served: Promise<ServeResult> = reverse.serve({ metadata: reverseMetadata });
    await opened;
    const sessionManager = new Http2SessionManager(`http://${address}`);
    try {
      await createClient(EchoService, createTunnelTransport(tunnel)).unary({});
      await createClient(EchoService, createTunnelTransport(handler.asChannel())).unary({});
      await createClient(EchoService, createGrpcTransport({ baseUrl: `http://${address}`, sessionManager })).unary({});
      assert.deepEqual(seen, [
        { kind: 'forward', agent: 'forward-1' },
        { kind: 'reverse', agent: 'reverse-1' },
        undefined,
      ]);
    } finally {
      sessionManager.abort();
      reverse.stop();
      await served;
      tunnel.close();
      connection.close();
      await stopServer(server);
    }
  });

  it('answer methods a partial implementation lacks with UNIMPLEMENTED, as connect-node does', async () => {
    const partial = { unary: () => ({ text: 'only this' }) };
    const h2 = http2.createServer(connectNodeAdapter({ routes: (r) => r.service(EchoService, partial) }));
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    const sessionManager = new Http2SessionManager(`http://127.0.0.1:${(h2.address() as AddressInfo).port}`);
    const handler = new TunnelServiceHandler();
    addConnectService(handler, EchoService, partial);
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new GrpcClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    const outcome = async (transport: ReturnType<typeof createTunnelTransport>) => {
      try {
        await createClient(EchoService, transport).clientStream((async function* () {})());
        return 'ok';
      } catch (e) {
        return [Code[(e as ConnectError).code], (e as ConnectError).rawMessage];
      }
    };
    try {
      const expected = await outcome(createGrpcTransport({ baseUrl: sessionManager.authority, sessionManager }));
      assert.deepEqual(expected, ['Unimplemented', 'connecttest.EchoService.ClientStream is not implemented']);
      assert.deepEqual(await outcome(createTunnelTransport(tunnel)), expected);
    } finally {
      sessionManager.abort();
      tunnel.close();
      connection.close();
      await stopServer(server);
      await new Promise((resolve) => h2.close(resolve));
    }
  });
});

describe('the transport over a pool', () => {
  it('fails a call at once with Unavailable while no tunnel is ready; with waitForReady the call waits for one', async () => {
    const seen = newSeen();
    const handler = new TunnelServiceHandler();
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new GrpcClient(address, credentials.createInsecure());
    const reverse = new ReverseTunnelServer(connection);
    addConnectService(reverse, EchoService, echoImpl(seen));
    let served: Promise<ServeResult> | undefined;
    try {
      await assert.rejects(createClient(EchoService, createTunnelTransport(handler.asChannel())).unary({}), (e) => {
        assert.equal((e as ConnectError).code, Code.Unavailable);
        return true;
      });
      const waiting = createClient(
        EchoService,
        createTunnelTransport(handler.asChannel(), { waitForReady: true }),
      ).unary({ text: 'waited' }, { timeoutMs: 30_000 });
      served = reverse.serve();
      assert.equal((await waiting).text, 'waited|timeout:true');
    } finally {
      reverse.stop();
      await served;
      connection.close();
      await stopServer(server);
    }
  });
});

describe('the transport over a forward tunnel', () => {
  it('fails calls with Unavailable once the tunnel is closed', async () => {
    const env = await ENVIRONMENTS['forward tunnel']!();
    const handler = new TunnelServiceHandler();
    addConnectService(handler, EchoService, echoImpl(newSeen()));
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new GrpcClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    const client = createClient(EchoService, createTunnelTransport(tunnel));
    try {
      assert.equal((await client.unary({ text: 'up' })).text, 'up|timeout:false');
      tunnel.close();
      await assert.rejects(client.unary({}), (e) => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.code, Code.Unavailable);
        return true;
      });
    } finally {
      connection.close();
      await stopServer(server);
      await env.close();
    }
  });

  it('carries large streams both ways with a slow reader (flow control, no loss, in order)', async () => {
    const env = await ENVIRONMENTS['forward tunnel']!();
    try {
      const text = 'x'.repeat(32 * 1024);
      let n = 0;
      for await (const m of env.client.serverStream({ text, repeat: 200 })) {
        assert.equal(m.index, n++);
        assert.equal(m.text.length, text.length);
        if (n % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(n, 200);
      const requests = (async function* () {
        for (let i = 0; i < 100; i++) yield { text: `${i}:${text}` };
      })();
      let m = 0;
      for await (const reply of env.client.bidi(requests)) assert.equal(reply.text.split(':')[0], String(m++));
      assert.equal(m, 100);
    } finally {
      await env.close();
    }
  });
});

after(stopAllServers);
