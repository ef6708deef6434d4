// The cross-implementation programs, run as real processes: every cell of
// tunnel type x server flow control x client flow control must pass. Mixed
// cells run revision zero through negotiation fallback. Either program can
// be swapped for the Go reference build; the flags are the same.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const program = (name: string) => fileURLToPath(new URL(`../../interop/${name}.js`, import.meta.url));

interface Finished {
  code: number | null;
  stderr: string;
}

function run(args: string[], timeoutMs: number): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [program('tunneltestclient'), ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Starts tunneltestsvr on a free port (it logs the port it got). */
function startServer(args: string[]): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [program('tunneltestsvr'), '-port', '0', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => {
      stderr += b.toString();
      const m = /Listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) resolve({ child, port: Number(m[1]), log: () => stderr });
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`tunneltestsvr exited with ${code}: ${stderr}`)));
  });
}

function stopServer(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

const count = (stderr: string, pattern: RegExp) => Number(pattern.exec(stderr)?.[1] ?? Number.NaN);

// Each cell is a client process running load for a fixed time (5 s, 10 s for
// 'both') against the one server of its row, with its own tunnels and reverse
// key: the six cells of a row at once take a third of the wall time, and less
// CPU (each runs for its time, however much it gets done).
const CELLS_AT_ONCE = 6;

// The server on a grpc-js Server (flow control on and off), and on node:http2
// directly (-own-server: the handler's handleHttp2Stream) with fewer cells.
const rows = [
  { serverFlow: true, ownServer: false },
  { serverFlow: false, ownServer: false },
  { serverFlow: true, ownServer: true },
];
for (const { serverFlow, ownServer } of rows) {
  const row = `server flow control ${serverFlow ? 'on' : 'off'}${ownServer ? ', own server' : ''}`;
  describe(`interop matrix, ${row}`, { concurrency: CELLS_AT_ONCE }, () => {
    let server: Awaited<ReturnType<typeof startServer>>;
    before(async () => {
      server = await startServer([...(serverFlow ? [] : ['-no-flow-control']), `-own-server=${ownServer}`]);
    });
    after(async () => {
      assert.equal(await stopServer(server.child), 0, 'the server shuts down cleanly on SIGTERM');
    });

    // The client's tunnel RPCs on grpc-js calls, and (both directions) on its own HTTP/2 session.
    const cells = [
      ...[true, false].flatMap((clientFlow) =>
        (ownServer ? (['both'] as const) : (['forward', 'reverse', 'both'] as const)).map((type) => ({
          clientFlow,
          type,
          own: false,
        })),
      ),
      { clientFlow: true, type: 'both' as const, own: true },
      { clientFlow: false, type: 'both' as const, own: true },
    ];
    for (const { clientFlow, type, own } of cells) {
      it(`${type}, client flow control ${clientFlow ? 'on' : 'off'}${own ? ', own connection' : ''}`, async (t) => {
        const args = ['-server-port', String(server.port), '-tunnel-type', type];
        if (!clientFlow) args.push('--no-flow-control');
        args.push(`-own-connection=${own}`);
        const result = await run(args, 30_000);
        assert.equal(result.code, 0, `tunneltestclient failed:\n${result.stderr}\nserver:\n${server.log()}`);
        const issued = count(result.stderr, /Issued (\d+) requests over tunnel\./);
        const served = count(result.stderr, /Served (\d+) requests over reverse tunnel\./);
        if (type !== 'reverse') assert.ok(issued > 0, 'forward RPCs were issued');
        if (type !== 'forward') {
          assert.ok(served > 0, 'reverse RPCs were served');
          assert.match(result.stderr, /Reverse tunnel started \(key = [0-9a-f]{64}\)\./);
        }
        t.diagnostic(
          `cell ${type}/server-fc-${serverFlow ? 'on' : 'off'}${ownServer ? '/own-server' : ''}/client-fc-${clientFlow ? 'on' : 'off'}${own ? '/own' : ''}: ` +
            `issued ${Number.isNaN(issued) ? '-' : issued}, served ${Number.isNaN(served) ? '-' : served}`,
        );
      });
    }
  });
}

it('tunneltestclient rejects an unknown tunnel type and an unreachable server with a non-zero exit', async () => {
  const bad = await run(['-tunnel-type', 'sideways'], 10_000);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /tunnel type "sideways" is not valid/);
  const unknownFlag = await run(['-bogus'], 10_000);
  assert.equal(unknownFlag.code, 1);
  assert.match(unknownFlag.stderr, /flag provided but not defined: -bogus/);
});
