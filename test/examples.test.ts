// The README's examples are real programs; run each and check what it prints.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const dir = fileURLToPath(new URL('../examples/', import.meta.url));

const expected: Record<string, string> = {
  'proto-loader': 'hello, proto-loader\ndone\n',
  'forward-tunnel': 'hello, tunnel\nhello #1, tunnel\nhello #2, tunnel\ndone\n',
  'nice-grpc': 'hello, nice-grpc\nhello #1, nice-grpc\nhello #2, nice-grpc\ndone\n',
  'typed-helper': 'in-flight call: CANCELLED\ntunnel closed\ndone\n',
  'reverse-tunnel':
    'agent edge-1 connected\nagent edge-1 connected\nhello, from the network server\n' +
    'anonymous agent: started=false, code=16\ndone\n',
  'connect-client': 'hello, connect\nhello #1, connect\nhello #2, connect\ndone\n',
  'connect-reverse':
    'hello, network server (served by edge-1)\nhello #1, network server\nhello #2, network server\n' +
    'true: name is required\ndone\n',
  'embedded-gateway':
    'hello, alice-key\nrefused: PERMISSION_DENIED this key is banned\n' +
    'refused: UNAUTHENTICATED missing or invalid caller credentials\n[["edge-1",1]]\nhello, the host\ndone\n',
  auth:
    'forward call via a forward tunnel of alice\nrefused: unknown tunnel token\n' +
    'reverse call via a reverse tunnel of gateway-1\ndone\n',
};

describe('examples', () => {
  for (const [name, output] of Object.entries(expected)) {
    it(`${name} prints what the README says and exits`, async () => {
      const { stdout } = await run(process.execPath, [`${dir}${name}.js`], { timeout: 30_000 });
      assert.equal(stdout, output);
    });
  }
});

it('the npm start demo makes every kind of call through the gateway and a tunnel, and exits with --once', async () => {
  const demo = fileURLToPath(import.meta.resolve('#gateway/cli/demo.js'));
  const { stdout } = await run(process.execPath, [demo, '--once'], { timeout: 30_000 });
  for (const line of ['unary', 'client streaming', 'server streaming', 'bidi streaming']) {
    assert.equal(stdout.match(new RegExp(`^${line} `, 'gm'))?.length, 2, `${line}: via the gateway and the tunnel`);
  }
  assert.match(stdout, /^agent +"laptop" connected with [12] tunnels? \(it asked for 2\)$/m);
  assert.match(stdout, /^gateway metrics +4 calls forwarded OK/m);
  assert.match(stdout, /^done +everything stopped$/m);
});
