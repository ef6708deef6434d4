// A client we did not write: gRPC's C core, through Debian's python3-grpcio,
// calls the echo service directly, through the CLI gateway and agent, and
// through a network server that forwards into a reverse-tunnel pool. What it
// observes through a tunnel must equal what it observes directly; this
// catches anything our HTTP/2 endpoints get wrong that grpc-js tolerates
// (header casing and order, trailers-only responses, grpc-message encoding,
// te: trailers, flow control). CI installs python3-grpcio (see .ci/run).
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { createProxyHandler } from 'grpctunnel';
import { type CliProcess, killAll, runCli } from '../helpers/cli.js';
import { type EchoObservations, EchoService, echoImplementation, handlerCancelled } from '../helpers/echo-service.js';
import { methodDefinition, rawBytesCodec } from '../helpers/method-definition.js';
import { type ReverseFixture, reverseFixture, startServer, stopServer } from '../helpers/servers.js';

const SCRIPT = fileURLToPath(new URL('../../../test/python/echo_client.py', import.meta.url));

/** A Python 3 with grpcio: Debian's python3 first (where apt installs python3-grpcio). */
function findPython(): string | undefined {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(candidate, ['-c', 'import grpc; print(grpc.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

const python = findPython();
const skip = python
  ? false
  : 'python3-grpcio is not installed (apt-get install python3-grpcio): the C-core client suite did not run';
if (skip) console.warn(`# SKIPPED: ${skip}`);

type Scenario = Record<string, unknown> & { scenario: string };

/** Runs the Python client against `address` and returns its scenarios by name. */
function runPython(address: string, agent?: string): Promise<Map<string, Scenario>> {
  return new Promise((resolve, reject) => {
    execFile(
      python as string,
      [SCRIPT, address, ...(agent ? [agent] : [])],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`python client failed: ${err.message}\n${stderr}`));
          return;
        }
        const lines = stdout.trim().split('\n').filter(Boolean);
        resolve(new Map(lines.map((l) => JSON.parse(l) as Scenario).map((s) => [s.scenario, s])));
      },
    );
  });
}

/** What a user could tell apart: metadata a service set (x-*), in order, and everything else as is. */
function comparable(s: Scenario): Scenario {
  const strip = (md: unknown) =>
    (md as [string, string][]).filter(([k]) => k.startsWith('x-') || k === 'grpc-status-details-bin');
  const out: Scenario = { ...s };
  for (const key of ['headers', 'trailers']) if (out[key]) out[key] = strip(out[key]);
  return out;
}

describe('python3-grpcio (gRPC C core) as the caller', { skip }, () => {
  const seen: EchoObservations = { cancelled: [] };
  let direct: Awaited<ReturnType<typeof startServer>>;
  let baseline: Map<string, Scenario>;

  before(async () => {
    direct = await startServer((s) => s.addService(EchoService, echoImplementation(seen)));
    baseline = await runPython(direct.address);
  });
  after(async () => {
    await stopServer(direct.server);
    await killAll();
  });

  it('directly over grpc-js: the baseline holds what the echo service promises', () => {
    const unary = baseline.get('unary') as Scenario;
    assert.equal(Buffer.from(unary.response as string, 'base64').toString(), 'hello from grpcio');
    assert.deepEqual(comparable(unary).headers, [
      ['x-echo-text', 'v1'],
      ['x-echo-blob-bin', Buffer.from([0, 1, 0xfe, 0xff]).toString('base64')],
    ]);
    assert.deepEqual(comparable(unary).trailers, [['x-trailer-t', 'tv']]);
    assert.equal(baseline.get('client-stream')?.response, '{"count":3,"total":70001}');
    assert.deepEqual(baseline.get('server-stream')?.sizes, [100_000, 100_000, 100_000, 100_000, 100_000]);
    assert.equal(baseline.get('bidi')?.count, 10);
    const error = baseline.get('error') as Scenario;
    assert.equal(error.code, 'NOT_FOUND');
    assert.equal(error.details, ' not found: 100% gone, caf\u00e9 \u2603 ');
    assert.deepEqual(comparable(error).trailers, [['grpc-status-details-bin', error.expected_details_bin]]);
    assert.equal(baseline.get('deadline')?.code, 'DEADLINE_EXCEEDED');
    assert.equal(baseline.get('cancel')?.code, 'CANCELLED');
  });

  describe('through the CLI gateway and agent', () => {
    let gw: CliProcess;
    let agent: CliProcess;
    let listen: string;
    const behind: EchoObservations = { cancelled: [] };
    let target: Awaited<ReturnType<typeof startServer>>;
    before(async () => {
      target = await startServer((s) => s.addService(EchoService, echoImplementation(behind)));
      gw = runCli(['gateway', '--listen', '127.0.0.1:0', '--agents', '127.0.0.1:0', '--token', 'py']);
      const m = await gw.waitFor(/callers on (\S+), agents on (\S+)/);
      listen = m[1] as string;
      const agents = (m[2] as string).replace(/,$/, '');
      agent = runCli([
        'agent',
        '--gateway',
        agents,
        '--target',
        target.address,
        '--id',
        'py-agent',
        '--token',
        'py',
        '--insecure',
      ]);
      await gw.waitFor(/agent py-agent connected/);
    });
    after(async () => {
      await agent.stop();
      await gw.stop();
      await stopServer(target.server);
    });

    it('every scenario looks as it does directly', async () => {
      const through = await runPython(listen, 'py-agent');
      for (const [name, expected] of baseline) {
        assert.deepEqual(comparable(through.get(name) as Scenario), comparable(expected), `scenario ${name}`);
      }
      await handlerCancelled(behind, 'serverStream'); // the target saw the cancellation
      assert.equal(behind.lastMetadata?.get('grpctunnel-agent').length, 0, 'the routing header is not forwarded');
    });
  });

  describe('through a network server that forwards into a reverse-tunnel pool', () => {
    let fixture: ReverseFixture;
    let front: Awaited<ReturnType<typeof startServer>>;
    before(async () => {
      fixture = await reverseFixture({}, {}, {}, 2);
      // Every echo method, served as a raw-bytes bidi call (gRPC frames all
      // call kinds alike) and proxied into the pool.
      const proxy = createProxyHandler(fixture.handler.asChannel());
      const definition: Record<string, MethodDefinition<Buffer, Buffer>> = {};
      const implementation: UntypedServiceImplementation = {};
      for (const [key, method] of Object.entries(EchoService)) {
        const name = method.path.slice(method.path.lastIndexOf('/') + 1);
        definition[key] = methodDefinition('test.Echo', name, true, true, rawBytesCodec);
        implementation[key] = proxy;
      }
      front = await startServer((s) => s.addService(definition, implementation));
    });
    after(async () => {
      await stopServer(front.server);
      await fixture.close();
    });

    it('every scenario looks as it does directly', async () => {
      const through = await runPython(front.address);
      for (const [name, expected] of baseline) {
        assert.deepEqual(comparable(through.get(name) as Scenario), comparable(expected), `scenario ${name}`);
      }
      await handlerCancelled(fixture.seen, 'serverStream'); // the agent saw the cancellation
    });
  });
});
