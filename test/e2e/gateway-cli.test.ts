// The command line's edges, with real processes: bad flags, agents pointed
// at the wrong kind of port, people opening the caller port with HTTP/1.1,
// the gateway's log lines per agent, and what /metrics counts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { unary } from '../helpers/calls.js';
import { makePki } from '../helpers/certs.js';
import {
  freePort,
  killAll,
  runCli,
  scrapeMetrics,
  startAgentCli,
  startGatewayCli,
  waitForAgent,
} from '../helpers/cli.js';
import { EchoClient, EchoService, echoImplementation, nextHandlerStarted } from '../helpers/echo-service.js';
import { startEchoTarget, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

/** Exit code of an agent whose --gateway does not serve reverse tunnels (documented in the README). */
const EXIT_NOT_A_TUNNEL_ENDPOINT = 4;

const echoTarget = startEchoTarget;

const raw = (b: Buffer) => b;

/** A unary call to any path; resolves with its error (null for OK). */
function call(client: EchoClient, path: string, md = new Metadata()): Promise<ServiceError | null> {
  return new Promise((resolve) => client.makeUnaryRequest(path, raw, raw, Buffer.from('x'), md, (err) => resolve(err)));
}

const agentHeader = (id: string) => {
  const md = new Metadata();
  md.set('grpctunnel-agent', id);
  return md;
};

/** The sample lines (not comments) of a /metrics text. */
const series = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));

describe('grpctunnel command line: exits, hints, logs and metrics', () => {
  afterEach(async () => {
    await killAll();
    await stopAllServers();
  });

  it('exits 2 with a one-line message for each bad flag', { timeout: 30_000 }, async () => {
    const gw = (...more: string[]) => ['gateway', '--listen', '127.0.0.1:0', '--agents', '127.0.0.1:0', ...more];
    const ag = (...more: string[]) => [
      'agent',
      '--gateway',
      '127.0.0.1:1',
      '--target',
      '127.0.0.1:1',
      '--id',
      'x',
      '--insecure',
      ...more,
    ];
    const cases: Array<[string[], RegExp]> = [
      [['gateway', '--listen', 'nonsense', '--agents', '127.0.0.1:0'], /--listen: "nonsense" is not a host:port/],
      [['gateway', '--listen', '127.0.0.1:70000', '--agents', '127.0.0.1:0'], /--listen: "127\.0\.0\.1:70000"/],
      [['gateway', '--listen', '127.0.0.1:0', '--agents', '127.0.0.1:99999'], /--agents: "127\.0\.0\.1:99999"/],
      [gw('--admin', 'admin-port'), /--admin: "admin-port" is not a host:port/],
      [gw('--log-level', 'loud'), /--log-level must be one of/],
      [['agent', '--gateway', 'nonsense', '--target', '127.0.0.1:1', '--id', 'x'], /--gateway: "nonsense"/],
      [
        ['agent', '--gateway', '127.0.0.1:1', '--target', '127.0.0.1:65536', '--id', 'x'],
        /--target: "127\.0\.0\.1:65536"/,
      ],
      [ag('--tunnels', '0'), /--tunnels must be between 1 and 100/],
      [ag('--tunnels', 'many'), /invalid value "many" for flag -tunnels/],
      [ag('--log-level', 'loud'), /--log-level must be one of/],
      [gw('--admin-token-file', 'admin-token'), /--admin-token-file needs --admin/],
      [
        gw('--admin', '127.0.0.1:0', '--admin-token-file', '/nonexistent/admin-token'),
        /cannot read admin token file \/nonexistent\/admin-token/,
      ],
      [gw('--max-message-size', '0'), /--max-message-size must be a size from 1 byte/],
      [gw('--max-message-size', '4GiB'), /--max-message-size must be a size from 1 byte/],
      [ag('--max-message-size', '16 megs'), /--max-message-size must be a size from 1 byte/],
      [ag('--max-message-size', '4096MiB'), /--max-message-size must be a size from 1 byte/],
    ];
    const runs = cases.map(([args]) => runCli(args));
    for (const [i, p] of runs.entries()) {
      const [args, message] = cases[i] as [string[], RegExp];
      assert.equal(await p.exited, 2, `${args.join(' ')} exits 2; log:\n${p.log()}`);
      assert.match(p.log(), new RegExp(`^grpctunnel: .*${message.source}`, 'm'), args.join(' '));
    }
  });

  it('an agent pointed at the caller port exits 4 and says it is not a tunnel endpoint', {
    timeout: 30_000,
  }, async () => {
    const t = await echoTarget();
    const gw = await startGatewayCli();
    const a = startAgentCli(gw.listen, t.address, 'lost');
    assert.equal(await a.exited, EXIT_NOT_A_TUNNEL_ENDPOINT, a.log());
    assert.match(a.log(), /grpctunnel: 127\.0\.0\.1:\d+ is not a grpctunnel agents port/);
    assert.match(a.log(), /caller port, not a tunnel endpoint/);
    assert.doesNotMatch(a.log(), /retrying/);
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('--admin-token-file guards the status page and /metrics, not the probes', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'grpctunnel-admin-'));
    try {
      writeFileSync(join(dir, 'admin-token'), 'k-admin-51c0\n');
      const gw = await startGatewayCli(['--admin-token-file', join(dir, 'admin-token')]);
      const status = async (path: string, token?: string) =>
        (await fetch(`http://${gw.admin}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {}))
          .status;
      assert.deepEqual(
        [await status('/'), await status('/metrics'), await status('/metrics', 'k-admin-51c0')],
        [401, 401, 200],
      );
      assert.equal(await status('/livez'), 200);
      await gw.p.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--max-message-size on both commands lets a call carry messages over 4 MiB', { timeout: 30_000 }, async () => {
    const large = { 'grpc.max_receive_message_length': 16 << 20, 'grpc.max_send_message_length': 16 << 20 };
    const t = await startServer((s) => s.addService(EchoService, echoImplementation()), { serverOptions: large });
    const gw = await startGatewayCli(['--max-message-size', '8MiB']);
    const a = startAgentCli(gw.agents, t.address, 'big', ['--tunnels', '1', '--max-message-size', '8388608']);
    await waitForAgent(gw.admin, 'big', 1);
    const echo = new EchoClient(gw.listen, credentials.createInsecure(), large);
    const payload = Buffer.alloc(6 << 20, 7);
    const reply = await unary(echo, payload, agentHeader('big'));
    assert.equal(reply.error, null, reply.error?.message);
    assert.ok(reply.value?.equals(payload));
    echo.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('an agent pointed at a plain gRPC server exits 4 and says it is not a tunnel endpoint', {
    timeout: 30_000,
  }, async () => {
    const t = await echoTarget();
    const a = startAgentCli(t.address, t.address, 'lost');
    assert.equal(await a.exited, EXIT_NOT_A_TUNNEL_ENDPOINT, a.log());
    assert.match(a.log(), /grpctunnel: 127\.0\.0\.1:\d+ is not a grpctunnel agents port \(it does not serve reverse/);
    await stopServer(t.server);
  });

  it('answers HTTP/1.1 and non-gRPC requests on the caller port with a plain-text hint', {
    timeout: 30_000,
  }, async () => {
    const t = await echoTarget();
    const gw = await startGatewayCli();
    const a = startAgentCli(gw.agents, t.address, 'h1', ['--tunnels', '1']);
    await waitForAgent(gw.admin, 'h1', 1);

    // node:http's client.
    const viaHttp = await new Promise<{ code: number | undefined; type: string | undefined; body: string }>(
      (resolve, reject) =>
        http
          .get(`http://${gw.listen}/`, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () => resolve({ code: res.statusCode, type: res.headers['content-type'], body }));
          })
          .on('error', reject),
    );
    assert.equal(viaHttp.code, 426);
    assert.match(viaHttp.type ?? '', /^text\/plain/);
    assert.match(viaHttp.body, /This is a gRPC endpoint/);

    // A curl-like request written by hand.
    const viaSocket = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(gw.listen.split(':')[1]), '127.0.0.1');
      let text = '';
      socket.on('data', (d) => {
        text += d.toString();
      });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write('GET / HTTP/1.1\r\nHost: example\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n');
    });
    assert.match(viaSocket, /^HTTP\/1\.1 426 /);
    assert.match(viaSocket, /grpctunnel gateway/);

    // An HTTP/2 GET (curl --http2-prior-knowledge, a browser through a proxy).
    const session = http2.connect(`http://${gw.listen}`);
    const viaHttp2 = await new Promise<{ code: unknown; body: string }>((resolve, reject) => {
      const req = session.request({ ':path': '/', ':method': 'GET' });
      let code: unknown;
      let body = '';
      req.on('response', (h) => {
        code = h[':status'];
      });
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => resolve({ code, body }));
      req.on('error', reject);
    });
    session.close();
    assert.equal(viaHttp2.code, 415);
    assert.match(viaHttp2.body, /This is a gRPC endpoint/);

    // gRPC callers are served as before.
    const echo = new EchoClient(gw.listen, credentials.createInsecure());
    assert.equal(await call(echo, '/test.Echo/Unary'), null);
    echo.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('answers HTTP/1.1 over TLS on the caller port with the hint', { timeout: 30_000 }, async () => {
    const pki = makePki([]);
    const dir = mkdtempSync(join(tmpdir(), 'grpctunnel-h1-'));
    try {
      writeFileSync(join(dir, 'gw.crt'), pki.server.cert);
      writeFileSync(join(dir, 'gw.key'), pki.server.key);
      const gw = await startGatewayCli(['--tls-cert', join(dir, 'gw.crt'), '--tls-key', join(dir, 'gw.key')]);
      const reply = await new Promise<{ code: number | undefined; body: string }>((resolve, reject) =>
        https
          .get(`https://${gw.listen}/`, { ca: pki.ca, servername: 'localhost' }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () => resolve({ code: res.statusCode, body }));
          })
          .on('error', reject),
      );
      assert.equal(reply.code, 426);
      assert.match(reply.body, /This is a gRPC endpoint/);
      await gw.p.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('logs one line when an agent id gets its first tunnel and one when its last goes; tunnels at debug', {
    timeout: 30_000,
  }, async () => {
    const t = await echoTarget();
    const gw = await startGatewayCli(['--log-level', 'debug']);
    const a = startAgentCli(gw.agents, t.address, 'lg', ['--tunnels', '3']);
    await waitForAgent(gw.admin, 'lg', 3);
    assert.equal(await a.stop(), 0);
    await gw.p.waitFor(/agent lg disconnected/);
    const log = gw.p.log();
    const count = (re: RegExp) => log.split('\n').filter((l) => re.test(l)).length;
    assert.equal(count(/ INFO +agent lg connected from 127\.0\.0\.1:\d+$/), 1, log);
    assert.equal(count(/ INFO +agent lg disconnected.*\(it had 3 tunnels; none left\)$/), 1, log);
    assert.equal(count(/ INFO +agent lg/), 2, log);
    assert.equal(count(/ DEBUG agent lg: tunnel from 127\.0\.0\.1:\d+ open/), 3, log);
    assert.equal(count(/ DEBUG agent lg: tunnel from 127\.0\.0\.1:\d+ closed/), 3, log);
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('counts a call the caller cancelled exactly once, in /metrics and in the log', { timeout: 30_000 }, async () => {
    const t = await echoTarget();
    const gw = await startGatewayCli();
    const a = startAgentCli(gw.agents, t.address, 'cc', ['--tunnels', '1']);
    await waitForAgent(gw.admin, 'cc', 1);
    const echo = new EchoClient(gw.listen, credentials.createInsecure());
    assert.equal(await call(echo, '/test.Echo/Unary'), null);
    const md = new Metadata();
    md.set('x-delay-ms', '10000');
    const reached = nextHandlerStarted(t.seen, 'unary');
    const ended = new Promise<ServiceError | null>((resolve) => {
      const c = echo.unary(Buffer.from('x'), md, (err: ServiceError | null) => resolve(err));
      // Cancel once the target's handler holds the call.
      void reached.then(() => c.cancel());
    });
    assert.equal((await ended)?.code, status.CANCELLED);
    const total = (text: string) =>
      series(text)
        .filter((l) => l.startsWith('grpctunnel_gateway_calls_total{'))
        .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    let text = await scrapeMetrics(gw.admin);
    // The gateway learns of the cancel over the network: poll for it.
    for (let i = 0; i < 200 && total(text) < 2; i++) {
      await new Promise((r) => setTimeout(r, 20));
      text = await scrapeMetrics(gw.admin);
    }
    assert.equal(total(text), 2, `one OK call and one cancelled:\n${text}`);
    assert.match(text, /grpctunnel_gateway_calls_total\{agent="cc",method="\/test.Echo\/Unary",code="CANCELLED"\} 1/);
    assert.match(text, /grpctunnel_gateway_call_duration_seconds_count\{code="CANCELLED"\} 1/);
    assert.equal(gw.p.log().match(/call \/test\.Echo\/Unary to cc failed: CANCELLED/g)?.length, 1, gw.p.log());
    echo.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('keeps /metrics bounded whatever methods and agent ids callers make up', { timeout: 30_000 }, async () => {
    const t = await echoTarget();
    const gw = await startGatewayCli();
    const a = startAgentCli(gw.agents, t.address, 'm1', ['--tunnels', '1']);
    await waitForAgent(gw.admin, 'm1', 1);
    const echo = new EchoClient(gw.listen, credentials.createInsecure());
    assert.equal(await call(echo, '/test.Echo/Unary'), null);
    const failing = new Metadata();
    failing.set('x-status-code', String(status.NOT_FOUND));
    assert.equal((await call(echo, '/test.Echo/Unary', failing))?.code, status.NOT_FOUND);
    const before = series(await scrapeMetrics(gw.admin)).length;

    const madeUp: Array<() => Promise<ServiceError | null>> = [];
    for (let i = 0; i < 300; i++) madeUp.push(() => call(echo, `/made.Up/M${i}`, agentHeader('m1')));
    for (let i = 0; i < 100; i++) madeUp.push(() => call(echo, `/made.Up/G${i}`, agentHeader(`ghost${i}`)));
    for (let i = 0; i < 100; i++) madeUp.push(() => call(echo, `/x${i}/y`));
    for (let i = 0; i < madeUp.length; i += 50) {
      const errors = await Promise.all(madeUp.slice(i, i + 50).map((f) => f()));
      for (const e of errors) assert.ok(e?.code === status.UNIMPLEMENTED || e?.code === status.UNAVAILABLE, e?.message);
    }
    const text = await scrapeMetrics(gw.admin);
    const added = series(text).length - before;
    // New series: calls by (agent, "(other)", code) for UNIMPLEMENTED and
    // UNAVAILABLE, and the latency histogram of those two codes (15 lines each).
    assert.ok(added <= 40, `${added} series added:\n${text}`);
    assert.doesNotMatch(text, /made\.Up|ghost|method="\/x\d/);
    assert.match(text, /grpctunnel_gateway_calls_total\{agent="m1",method="\(other\)",code="UNIMPLEMENTED"\} 400/);
    assert.match(text, /grpctunnel_gateway_calls_total\{agent="",method="\(other\)",code="UNAVAILABLE"\} 100/);
    // Methods an agent served keep their names, whatever the code.
    assert.match(text, /grpctunnel_gateway_calls_total\{agent="m1",method="\/test.Echo\/Unary",code="NOT_FOUND"\} 1/);
    echo.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('says once at start how to give Node a heap budget, and not when Node has one', { timeout: 30_000 }, async () => {
    const port = await freePort(); // nothing listens: the agent keeps retrying, logging each attempt
    const args = ['agent', '--gateway', `127.0.0.1:${port}`, '--target', '127.0.0.1:1', '--id', 'h', '--insecure'];
    const hint = / INFO +Node was started without --initial-old-space-size; .*node --initial-old-space-size=128/;
    const plain = runCli(args);
    await plain.waitFor(/cannot reach gateway/);
    const lines = plain.log().split('\n');
    const hints = lines.filter((l) => hint.test(l));
    assert.equal(hints.length, 1, plain.log());
    assert.equal(await plain.stop(), 0);
    const budgeted = runCli(args, ['--initial-old-space-size=128']);
    await budgeted.waitFor(/cannot reach gateway/);
    assert.doesNotMatch(budgeted.log(), /initial-old-space-size/);
    assert.equal(await budgeted.stop(), 0);
  });

  it('still exits 1 when its address is taken', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const holder = net.createServer().listen(port, '127.0.0.1');
    await new Promise((r) => holder.once('listening', r));
    const p = runCli(['gateway', '--listen', `127.0.0.1:${port}`, '--agents', '127.0.0.1:0']);
    assert.equal(await p.exited, 1);
    assert.match(p.log(), /cannot listen on 127\.0\.0\.1:\d+/);
    await new Promise((r) => holder.close(r));
  });
});
