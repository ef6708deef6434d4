// The README's examples are real programs; run each and check what it prints.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const dir = fileURLToPath(new URL('../examples/', import.meta.url));

const expected: Record<string, string> = {
  'forward-tunnel': 'hello, tunnel\nhello #1, tunnel\nhello #2, tunnel\ndone\n',
  'nice-grpc': 'hello, nice-grpc\nhello #1, nice-grpc\nhello #2, nice-grpc\ndone\n',
  'typed-helper': 'in-flight call: CANCELLED\ntunnel closed\ndone\n',
};

describe('examples', () => {
  for (const [name, output] of Object.entries(expected)) {
    it(`${name} prints what the README says and exits`, async () => {
      const { stdout } = await run(process.execPath, [`${dir}${name}.js`], { timeout: 30_000 });
      assert.equal(stdout, output);
    });
  }
});
