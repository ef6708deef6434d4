// The command-line gateway and agent, end to end with real processes: a
// target gRPC server, agents, a gateway and a plain grpc-js client.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { callKindTests } from '../helpers/call-kinds.js';
import { unary } from '../helpers/calls.js';
import { makePki } from '../helpers/certs.js';
import {
  type CliProcess,
  freePort,
  type GatewayProcess,
  killAll,
  runCli,
  scrapeMetrics,
  startAgentCli,
  startGatewayCli,
  waitForAgent,
} from '../helpers/cli.js';
import { EchoClient, nextHandlerCancelled, nextHandlerStarted } from '../helpers/echo-service.js';
import { type EchoTarget, startEchoTarget, stopServer } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

type Target = EchoTarget;
const target = startEchoTarget;

function gateway(extra: string[] = [], agentsPort = 0): Promise<GatewayProcess> {
  return startGatewayCli(agentsPort === 0 ? extra : ['--agents', `127.0.0.1:${agentsPort}`, ...extra]);
}

async function agent(gatewayAgents: string, to: Target, id: string, extra: string[] = []): Promise<CliProcess> {
  return startAgentCli(gatewayAgents, to.address, id, ['--tunnels', '2', ...extra]);
}

const toAgent = (id: string) => {
  const md = new Metadata();
  md.set('grpctunnel-agent', id);
  return md;
};

describe('gateway and agent: one agent, every call kind', () => {
  let t: Target;
  let gw: Awaited<ReturnType<typeof gateway>>;
  let a: CliProcess;
  let echo: EchoClient;
  before(async () => {
    t = await target();
    gw = await gateway();
    a = await agent(gw.agents, t, 'a1');
    await waitForAgent(gw.admin, 'a1', 2);
    echo = new EchoClient(gw.listen, credentials.createInsecure());
  });
  after(async () => {
    echo.close();
    assert.equal(await a.stop(), 0, 'the agent exits 0 on SIGTERM');
    assert.equal(await gw.p.stop(), 0, 'the gateway exits 0 on SIGTERM');
    await stopServer(t.server);
  });

  callKindTests(() => ({ echo, seen: t.seen }));

  it('passes deadlines and cancellation end to end', async () => {
    const slow = new Metadata();
    slow.set('x-delay-ms', '3000');
    const cancelled = nextHandlerCancelled(t.seen, 'unary');
    const r = await unary(echo, Buffer.from('x'), slow, { deadline: Date.now() + 200 });
    assert.equal(r.error?.code, status.DEADLINE_EXCEEDED);
    await cancelled; // the target handler saw the cancellation
    const deadline = Number(t.seen.lastDeadline);
    assert.ok(deadline > Date.now() - 5000 && deadline < Date.now() + 5000, 'the target saw the caller deadline');
  });

  it('offers callers 1 MiB HTTP/2 windows on its front port', async () => {
    const session = http2.connect(`http://${gw.listen}`);
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
      assert.equal(settings.initialWindowSize, 1 << 20);
      // The connection's WINDOW_UPDATE follows the SETTINGS; node:http2 emits
      // no event for it, so poll (bounded) the window it reports.
      await until(() => (session.state.remoteWindowSize ?? 0) >= 1 << 19, 'a WINDOW_UPDATE for the connection', {
        timeoutMs: 2000,
      }).catch(() => undefined);
      assert.ok(
        (session.state.remoteWindowSize ?? 0) >= 1 << 19,
        `connection window ${session.state.remoteWindowSize}`,
      );
    } finally {
      session.close();
    }
  });

  it('logs, and counts in /metrics, the calls it forwarded', async () => {
    const before = await scrapeMetrics(gw.admin);
    for (let i = 0; i < 3; i++) assert.equal((await unary(echo, Buffer.from('m'))).error, null);
    const failing = new Metadata();
    failing.set('x-status-code', String(status.NOT_FOUND));
    assert.equal((await unary(echo, Buffer.from('m'), failing)).error?.code, status.NOT_FOUND);
    const afterScrape = await scrapeMetrics(gw.admin);
    const count = (text: string, code: string) =>
      Number(
        new RegExp(
          `grpctunnel_gateway_calls_total\\{agent="a1",method="/test.Echo/Unary",code="${code}"\\} (\\d+)`,
        ).exec(text)?.[1] ?? 0,
      );
    assert.equal(count(afterScrape, 'OK') - count(before, 'OK'), 3);
    assert.equal(count(afterScrape, 'NOT_FOUND') - count(before, 'NOT_FOUND'), 1);
    assert.match(afterScrape, /grpctunnel_gateway_agents 1/);
    assert.match(afterScrape, /grpctunnel_gateway_tunnels 2/);
    assert.match(afterScrape, /grpctunnel_gateway_call_duration_seconds_bucket/);
    const page = await (await fetch(`http://${gw.admin}/`)).text();
    assert.match(page, /<td>a1<\/td><td>2<\/td>/);
    assert.match(page, /NOT_FOUND/);
    assert.equal(await (await fetch(`http://${gw.admin}/healthz`)).text(), 'ok\n');
    assert.match(gw.p.log(), /call \/test.Echo\/Unary to a1 failed: NOT_FOUND/);
  });
});

describe('gateway and agent: routing, pools, failures', () => {
  // Each test stops its own processes; a failed one leaves them to this.
  afterEach(() => killAll());

  it('routes by header, pools agents with the same id, and names the header when it must', async () => {
    const t1 = await target();
    const t2 = await target();
    const gw = await gateway();
    const a1 = await agent(gw.agents, t1, 'one');
    const a2 = await agent(gw.agents, t2, 'two');
    await waitForAgent(gw.admin, 'one', 2);
    await waitForAgent(gw.admin, 'two', 2);
    const echo = new EchoClient(gw.listen, credentials.createInsecure());

    const ambiguous = await unary(echo, Buffer.from('x'));
    assert.equal(ambiguous.error?.code, status.UNAVAILABLE);
    assert.match(ambiguous.error?.details ?? '', /grpctunnel-agent/);
    const unknown = await unary(echo, Buffer.from('x'), toAgent('zzz'));
    assert.equal(unknown.error?.code, status.UNAVAILABLE);
    assert.equal(unknown.error?.details, 'no agent zzz connected');

    await unary(echo, Buffer.from('to two'), toAgent('two'));
    assert.equal(t2.seen.lastMetadata?.get('grpctunnel-agent').length, 0, 'the routing header is not forwarded');
    assert.equal(t1.seen.lastMetadata, undefined, 'agent one got nothing');

    // A second agent with id "one", in front of the other target: a pool.
    const a1b = await agent(gw.agents, t2, 'one');
    await waitForAgent(gw.admin, 'one', 4);
    delete t2.seen.lastMetadata;
    for (let i = 0; i < 8; i++) assert.equal((await unary(echo, Buffer.from('p'), toAgent('one'))).error, null);
    assert.ok(t1.seen.lastMetadata && t2.seen.lastMetadata, 'both agents with id "one" took calls');

    echo.close();
    await Promise.all([a1.stop(), a2.stop(), a1b.stop()]);
    await gw.p.stop();
    await Promise.all([stopServer(t1.server), stopServer(t2.server)]);
  });

  it('fails calls at once when their agent dies, and carries calls again once it is back', async () => {
    const t = await target();
    const gw = await gateway();
    let a = await agent(gw.agents, t, 'edge');
    await waitForAgent(gw.admin, 'edge', 2);
    const echo = new EchoClient(gw.listen, credentials.createInsecure());
    const slow = new Metadata();
    slow.set('x-delay-ms', '10000');
    const reached = nextHandlerStarted(t.seen, 'unary');
    const started = Date.now();
    const inFlight = unary(echo, Buffer.from('x'), slow);
    await reached;
    a.child.kill('SIGKILL');
    const r = await inFlight;
    assert.equal(r.error?.code, status.UNAVAILABLE);
    assert.ok(Date.now() - started < 8000, 'the call did not wait for its handler');
    await gw.p.waitFor(/agent edge disconnected.*none left/);
    assert.equal((await unary(echo, Buffer.from('x'))).error?.code, status.UNAVAILABLE);

    a = await agent(gw.agents, t, 'edge');
    await waitForAgent(gw.admin, 'edge', 2);
    assert.equal((await unary(echo, Buffer.from('back'))).value?.toString(), 'back');
    echo.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('refuses an agent with a wrong token: UNAUTHENTICATED, logged, agent exits 3', async () => {
    const t = await target();
    const gw = await gateway();
    const a = runCli([
      'agent',
      '--gateway',
      gw.agents,
      '--target',
      t.address,
      '--id',
      'x',
      '--token',
      'wrong',
      '--insecure',
    ]);
    assert.equal(await a.exited, 3);
    assert.match(a.log(), /the gateway refused the token/);
    await gw.p.waitFor(/refused a tunnel from 127\.0\.0\.1:\d+: unknown token/);
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('agents reconnect after the gateway restarts', async () => {
    const t = await target();
    const port = await freePort();
    let gw = await gateway([], port);
    const a = await agent(gw.agents, t, 'edge');
    await waitForAgent(gw.admin, 'edge', 2);
    assert.equal(await gw.p.stop(), 0);
    gw = await gateway([], port);
    await waitForAgent(gw.admin, 'edge', 2);
    const echo = new EchoClient(gw.listen, credentials.createInsecure());
    assert.equal((await unary(echo, Buffer.from('again'))).value?.toString(), 'again');
    echo.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('serves both ports over TLS; agents verify the gateway with --ca', async () => {
    const pki = makePki([]);
    const dir = mkdtempSync(join(tmpdir(), 'grpctunnel-tls-'));
    try {
      writeFileSync(join(dir, 'gw.crt'), pki.server.cert);
      writeFileSync(join(dir, 'gw.key'), pki.server.key);
      writeFileSync(join(dir, 'ca.crt'), pki.ca);
      const t = await target();
      const gw = await gateway(['--tls-cert', join(dir, 'gw.crt'), '--tls-key', join(dir, 'gw.key')]);
      const a = runCli([
        'agent',
        '--gateway',
        gw.agents,
        '--target',
        t.address,
        '--id',
        'tls',
        '--token',
        'secret',
        '--ca',
        join(dir, 'ca.crt'),
        '--tunnels',
        '1',
      ]);
      await waitForAgent(gw.admin, 'tls', 1);
      const echo = new EchoClient(gw.listen, credentials.createSsl(pki.ca));
      assert.equal((await unary(echo, Buffer.from('secure'))).value?.toString(), 'secure');
      const plain = new EchoClient(gw.listen, credentials.createInsecure());
      assert.equal(
        (await unary(plain, Buffer.from('x'), new Metadata(), { deadline: Date.now() + 2000 })).error?.code,
        status.UNAVAILABLE,
      );
      echo.close();
      plain.close();
      await a.stop();
      await gw.p.stop();
      await stopServer(t.server);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('explains bad flags in one line, with exit code 2, and prints help', async () => {
    const bad = runCli(['gateway', '--listen', '127.0.0.1:0']);
    assert.equal(await bad.exited, 2);
    assert.match(bad.log(), /^grpctunnel: gateway needs --listen and --agents/m);
    const unknown = runCli(['agent', '--bogus']);
    assert.equal(await unknown.exited, 2);
    assert.match(unknown.log(), /flag provided but not defined: -bogus/);
    const help = runCli(['agent', '--help']);
    assert.equal(await help.exited, 0);
    assert.match(help.log(), /--gateway HOST:PORT/);
    const busy = await gateway();
    const clash = runCli(['gateway', '--listen', busy.listen, '--agents', '127.0.0.1:0']);
    assert.equal(await clash.exited, 1);
    assert.match(clash.log(), /cannot listen on 127\.0\.0\.1:\d+/);
    await busy.p.stop();
  });
});
