// A frozen agent (SIGSTOP: its kernel still acknowledges TCP, the process
// answers nothing) under the command-line gateway: the gateway's keepalive
// pings notice it, its tunnels leave the status page, the calls on them fail
// UNAVAILABLE naming the cause; once thawed, the agent reconnects.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { credentials, Metadata, type Server, status } from '@grpc/grpc-js';
import { parseDuration, parseKeepaliveFlag } from '#gateway/cli/keepalive-flag.js';
import { unary } from '../helpers/calls.js';
import { type CliProcess, killAll, runCli, startAgentCli, startGatewayCli } from '../helpers/cli.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { startServer, stopServer } from '../helpers/servers.js';

async function statusPage(admin: string): Promise<string> {
  return (await fetch(`http://${admin}/`)).text();
}

/** Bounded poll of the status page (it has no events). */
async function untilPage(admin: string, check: (page: string) => boolean, ms = 15_000): Promise<void> {
  const start = Date.now();
  while (!check(await statusPage(admin))) {
    if (Date.now() - start > ms) throw new Error(`status page never matched:\n${await statusPage(admin)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('gateway keepalive with a frozen agent', { timeout: 60_000 }, () => {
  let target: Server | undefined;
  let gw: CliProcess | undefined;
  let agent: CliProcess | undefined;
  let echo: EchoClient | undefined;
  after(async () => {
    echo?.close();
    if (agent?.child.pid) agent.child.kill('SIGCONT');
    await killAll();
    if (target) await stopServer(target);
  });

  it('drops its tunnels, fails its calls UNAVAILABLE naming the cause, and takes it back once thawed', async () => {
    const started = await startServer((s) => s.addService(EchoService, echoImplementation()));
    target = started.server;
    const gateway = await startGatewayCli(['--keepalive', '500ms,1s'], null);
    gw = gateway.p;
    const { listen, agents, admin } = gateway;
    agent = startAgentCli(agents, started.address, 'frozen', ['--tunnels', '2']);
    await untilPage(admin, (page) => page.includes('<td>frozen</td><td>2</td>'));
    echo = new EchoClient(listen, credentials.createInsecure());
    // Calls without deadlines, held by the target until long after the test.
    const slow = new Metadata();
    slow.set('x-delay-ms', '600000');
    const calls = Array.from({ length: 4 }, () => unary(echo as EchoClient, Buffer.from('x'), slow.clone()));
    await untilPage(admin, (page) => page.includes('<td>frozen</td><td>2</td><td>4</td>'));

    const frozenAt = Date.now();
    agent.child.kill('SIGSTOP');
    const results = await Promise.all(calls);
    const detectedMs = Date.now() - frozenAt;
    for (const r of results) {
      assert.equal(r.error?.code, status.UNAVAILABLE);
      assert.match(String(r.error?.details), /keepalive ping not answered within 1000 ms/);
    }
    await gw.waitFor(
      /agent frozen disconnected: keepalive ping not answered within 1000 ms \(it had 2 tunnels; none left\)/,
    );
    await untilPage(admin, (page) => page.includes('none connected'));
    assert.ok(detectedMs < 5000, `detected after ${detectedMs} ms`);
    console.log(`frozen agent detected after ${detectedMs} ms`);

    agent.child.kill('SIGCONT');
    await untilPage(admin, (page) => page.includes('<td>frozen</td><td>2</td>'));
    assert.equal((await unary(echo, Buffer.from('thawed'))).error, null);
  });
});

describe('--keepalive', () => {
  it('takes INTERVAL[,TIMEOUT] as Go durations, or off', () => {
    assert.deepEqual(parseKeepaliveFlag('15s,10s'), { timeMs: 15_000, timeoutMs: 10_000 });
    assert.deepEqual(parseKeepaliveFlag('2s'), { timeMs: 2000 });
    assert.deepEqual(parseKeepaliveFlag('1m30s,500ms'), { timeMs: 90_000, timeoutMs: 500 });
    assert.equal(parseKeepaliveFlag('off'), false);
    assert.equal(parseDuration('1.5s'), 1500);
    for (const bad of ['15', '15s,', 'soon', '1s,2s,3s', '-1s'])
      assert.throws(() => parseKeepaliveFlag(bad), Error, bad);
  });

  it('refuses bad values with the usage exit code, on both commands', async () => {
    for (const value of ['often', '50ms']) {
      const gw = runCli(['gateway', '--listen', '127.0.0.1:0', '--agents', '127.0.0.1:0', '--keepalive', value]);
      assert.equal(await gw.exited, 2);
      assert.match(gw.log(), /invalid duration "often"|keepalive.timeMs must be/);
    }
    const agent = runCli([
      'agent',
      '--gateway',
      '127.0.0.1:1',
      '--target',
      '127.0.0.1:1',
      '--id',
      'a',
      '--insecure',
      '--keepalive',
      '10ms',
    ]);
    assert.equal(await agent.exited, 2);
    assert.match(agent.log(), /keepalive.timeMs must be/);
  });
});
