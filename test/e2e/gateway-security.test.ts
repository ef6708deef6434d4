// The gateway's security with real processes: agent tokens bound to ids,
// caller authentication by token and by client certificate, the policy and
// its reload on SIGHUP, the refusal to serve unauthenticated callers on a
// public address, credentials not forwarded, and idle connections closed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { collect, serverStream, unary } from '../helpers/calls.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import {
  type CliProcess,
  type GatewayProcess,
  killAll,
  runCli,
  startAgentCli,
  startGatewayCli,
} from '../helpers/cli.js';
import { EchoClient } from '../helpers/echo-service.js';
import { type EchoTarget, startEchoTarget, stopServer } from '../helpers/servers.js';

let dir: string;
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

type Target = EchoTarget;
const target = startEchoTarget;

/** A gateway with no agent token of its own: each test gives its credentials. */
function gateway(flags: string[]): Promise<GatewayProcess> {
  return startGatewayCli(flags, null);
}

function agent(agents: string, to: Target, id: string, token: string): CliProcess {
  return startAgentCli(agents, to.address, id, ['--token', token, '--tunnels', '1']);
}

const as = (caller: string | undefined, agentId: string) => {
  const md = new Metadata();
  md.set('grpctunnel-agent', agentId);
  if (caller) md.set('authorization', `Bearer ${caller}`);
  return md;
};

async function metric(admin: string, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'grpctunnel-security-'));
});
after(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent tokens bound to ids', () => {
  it('a token for edge-a serves edge-a, and is refused with PERMISSION_DENIED for edge-b (the agent exits 3)', async () => {
    const t = await target();
    const tokens = file('agent-tokens', '# token  ids\nk-a edge-a\nk-b edge-b site-*\n');
    const gw = await gateway(['--tokens-file', tokens]);
    const good = agent(gw.agents, t, 'edge-a', 'k-a');
    await gw.p.waitFor(/agent edge-a connected/);
    const thief = agent(gw.agents, t, 'edge-b', 'k-a');
    assert.equal(await thief.exited, 3, 'refused for good: retrying cannot help');
    assert.match(thief.log(), /may not register the agent id "edge-b"/);
    await gw.p.waitFor(/refused a tunnel from \S+: its token may not register the agent id "edge-b"/);
    assert.ok((await metric(gw.admin, /agent_connections_total\{result="refused"\} (\d+)/)) >= 1);
    const pattern = agent(gw.agents, t, 'site-berlin', 'k-b');
    await gw.p.waitFor(/agent site-berlin connected/);
    await good.stop();
    await pattern.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('SIGHUP with a token revoked closes its tunnels at once; the agent is refused and exits 3', async () => {
    const t = await target();
    const tokens = file('agent-tokens-revoke', 'k-keep edge-keep\nk-gone edge-gone\n');
    const gw = await gateway(['--tokens-file', tokens]);
    const kept = agent(gw.agents, t, 'edge-keep', 'k-keep');
    const revoked = agent(gw.agents, t, 'edge-gone', 'k-gone');
    await gw.p.waitFor(/agent edge-keep connected/);
    await gw.p.waitFor(/agent edge-gone connected/);
    writeFileSync(tokens, 'k-keep edge-keep\n');
    gw.p.child.kill('SIGHUP');
    await gw.p.waitFor(/credentials and policy reloaded; closed 1 tunnel of revoked agents/);
    assert.equal(await revoked.exited, 3, 'the redial is refused for good');
    assert.match(revoked.log(), /the gateway refused the token/);
    const echo = new EchoClient(gw.listen, credentials.createInsecure());
    assert.equal((await unary(echo, Buffer.from('k'), as(undefined, 'edge-keep'))).value?.toString(), 'k');
    echo.close();
    assert.doesNotMatch(gw.p.log(), /agent edge-keep disconnected/, 'the other agent kept its tunnel');
    await kept.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('a tokens file line without ids is a usage error naming the line', async () => {
    const p = runCli([
      'gateway',
      '--listen',
      '127.0.0.1:0',
      '--agents',
      '127.0.0.1:0',
      '--tokens-file',
      file('old', 'k-a\n'),
    ]);
    assert.equal(await p.exited, 2);
    assert.match(p.log(), /old:1: the token needs the agent ids it may register/);
  });
});

describe('callers: tokens, policy, SIGHUP', () => {
  let t: Target;
  let gw: Awaited<ReturnType<typeof gateway>>;
  let a: CliProcess;
  let echo: EchoClient;
  let policy: string;
  before(async () => {
    t = await target();
    policy = file('policy', 'allow ci edge-a /test.Echo/Unary\nallow ops *\n');
    gw = await gateway([
      '--token',
      'agent-secret',
      '--caller-tokens-file',
      file('caller-tokens', 't-ci ci\nt-ops ops\n'),
      '--policy',
      policy,
    ]);
    a = agent(gw.agents, t, 'edge-a', 'agent-secret');
    await gw.p.waitFor(/agent edge-a connected/);
    echo = new EchoClient(gw.listen, credentials.createInsecure());
  });
  after(async () => {
    echo.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });

  it('refuses missing and wrong caller tokens with UNAUTHENTICATED before forwarding anything', async () => {
    delete t.seen.lastMetadata;
    for (const token of [undefined, 'nope']) {
      const r = await unary(echo, Buffer.from('x'), as(token, 'edge-a'));
      assert.equal(r.error?.code, status.UNAUTHENTICATED);
      assert.equal(r.error?.details, 'missing or invalid caller credentials');
    }
    assert.equal(t.seen.lastMetadata, undefined, 'the target saw nothing');
    assert.equal(await metric(gw.admin, /caller_refusals_total\{reason="unauthenticated"\} (\d+)/), 2);
    await gw.p.waitFor(/refused a call to \/test.Echo\/Unary from \S+: unknown caller token/);
  });

  it('forwards what the policy allows, without the caller credentials, and denies the rest', async () => {
    const ok = await unary(echo, Buffer.from('allowed'), as('t-ci', 'edge-a'));
    assert.equal(ok.value?.toString(), 'allowed');
    assert.deepEqual(t.seen.lastMetadata?.get('authorization'), [], 'the caller token is not forwarded');
    assert.deepEqual(t.seen.lastMetadata?.get('grpctunnel-agent'), []);
    const denied = await collect(serverStream(echo, 1, 10, as('t-ci', 'edge-a')));
    assert.equal(denied.error?.code, status.PERMISSION_DENIED);
    assert.match(denied.error?.details ?? '', /caller ci may not call \/test.Echo\/ServerStream on agent edge-a/);
    const ops = await collect(serverStream(echo, 2, 10, as('t-ops', 'edge-a')));
    assert.equal(ops.messages.length, 2);
    assert.equal(await metric(gw.admin, /caller_refusals_total\{reason="permission_denied"\} (\d+)/), 1);
  });

  it('re-reads the policy on SIGHUP without dropping tunnels; a broken file keeps the old rules', async () => {
    writeFileSync(policy, 'allow ci edge-a /test.Echo/\n');
    gw.p.child.kill('SIGHUP');
    await gw.p.waitFor(/credentials and policy reloaded/);
    const now = await collect(serverStream(echo, 1, 10, as('t-ci', 'edge-a')));
    assert.equal(now.messages.length, 1, 'the whole service is allowed now');
    const opsNow = await unary(echo, Buffer.from('x'), as('t-ops', 'edge-a'));
    assert.equal(opsNow.error?.code, status.PERMISSION_DENIED, 'ops lost its rule');

    writeFileSync(policy, 'allow ci\n');
    gw.p.child.kill('SIGHUP');
    await gw.p.waitFor(/reload failed, the previous rules stay: .*policy:1: expected "allow CALLER AGENTS/);
    const still = await unary(echo, Buffer.from('still'), as('t-ci', 'edge-a'));
    assert.equal(still.value?.toString(), 'still');
    assert.doesNotMatch(gw.p.log(), /agent edge-a disconnected/, 'the tunnel stayed up throughout');
  });
});

describe('client certificates on the caller port', () => {
  let pki: TestPki;
  before(() => {
    pki = makePki(['ops']);
  });

  it('names the caller by its certificate and refuses connections without one', async () => {
    const t = await target();
    const gw = await gateway([
      '--token',
      'agent-secret',
      '--tls-cert',
      file('gw.crt', pki.server.cert.toString()),
      '--tls-key',
      file('gw.key', pki.server.key.toString()),
      '--client-ca',
      file('ca.crt', pki.ca.toString()),
      '--policy',
      file('mtls-policy', 'allow ops edge-a\n'),
    ]);
    const a = runCli([
      'agent',
      '--gateway',
      gw.agents,
      '--target',
      t.address,
      '--id',
      'edge-a',
      '--token',
      'agent-secret',
      '--ca',
      file('agent-ca.crt', pki.ca.toString()),
      '--tunnels',
      '1',
    ]);
    await gw.p.waitFor(/agent edge-a connected/);
    const ops = pki.clients.ops as { key: Buffer; cert: Buffer };
    const withCert = new EchoClient(gw.listen, credentials.createSsl(pki.ca, ops.key, ops.cert));
    assert.equal((await unary(withCert, Buffer.from('mtls'), as(undefined, 'edge-a'))).value?.toString(), 'mtls');
    const withoutCert = new EchoClient(gw.listen, credentials.createSsl(pki.ca));
    const refused = await unary(withoutCert, Buffer.from('x'), as(undefined, 'edge-a'));
    assert.equal(refused.error?.code, status.UNAUTHENTICATED);
    await gw.p.waitFor(/refused a call to \S+ from \S+: no client certificate/);
    withCert.close();
    withoutCert.close();
    await a.stop();
    await gw.p.stop();
    await stopServer(t.server);
  });
});

describe('public addresses and idle connections', () => {
  it('refuses to serve unauthenticated callers on a non-loopback address unless told to', async () => {
    const refused = runCli(['gateway', '--listen', '0.0.0.0:0', '--agents', '127.0.0.1:0']);
    assert.equal(await refused.exited, 2);
    assert.match(refused.log(), /refusing to serve callers on 0.0.0.0:0 without caller authentication/);
    const allowed = runCli([
      'gateway',
      '--listen',
      '0.0.0.0:0',
      '--agents',
      '127.0.0.1:0',
      '--allow-unauthenticated-callers',
    ]);
    await allowed.waitFor(/callers on 0.0.0.0:\d+/);
    assert.match(allowed.log(), /WARN .*are not authenticated/);
    assert.equal(await allowed.stop(), 0);
  });

  it('closes connections that stay silent past --idle-timeout, on both gRPC ports', async () => {
    const gw = await gateway(['--idle-timeout', '300']);
    for (const address of [gw.listen, gw.agents]) {
      const [host, port] = address.split(':');
      const socket = net.connect(Number(port), host as string);
      socket.on('error', () => {});
      const began = Date.now();
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
      assert.ok(Date.now() - began >= 250, `closed after the timeout, not before (${address})`);
    }
    assert.ok((await metric(gw.admin, /connections_closed_total\{port="agents",reason="idle"\} (\d+)/)) >= 1);
    await gw.p.stop();
  });
});
