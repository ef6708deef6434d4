import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { callKindTests } from '../helpers/call-kinds.js';
import { type ReverseFixture, reverseFixture } from '../helpers/servers.js';

for (const [handlerFc, serverFc] of [
  [true, true],
  [false, true],
  [true, false],
] as const) {
  const revision = handlerFc && serverFc ? 1 : 0;
  describe(`reverse tunnel, revision ${revision} (flow control: handler ${handlerFc}, reverse server ${serverFc})`, () => {
    let f: ReverseFixture;
    before(async () => {
      f = await reverseFixture({ flowControl: handlerFc }, { flowControl: serverFc });
    });
    after(() => f.close());

    it(`negotiates revision ${revision}`, () => {
      const [tunnel] = f.handler.allReverseTunnels();
      assert.equal(tunnel?.channel.protocolRevision, revision);
      assert.equal(tunnel?.info.kind, 'reverse');
    });

    callKindTests(() => f);
  });
}
