import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { callKindTests } from '../helpers/call-kinds.js';
import { forwardFixture, type TunnelFixture } from '../helpers/servers.js';

for (const [handlerFc, clientFc] of [
  [true, true],
  [false, true],
  [true, false],
] as const) {
  const revision = handlerFc && clientFc ? 1 : 0;
  describe(`forward tunnel, revision ${revision} (flow control: handler ${handlerFc}, client ${clientFc})`, () => {
    let f: TunnelFixture;
    before(async () => {
      f = await forwardFixture({ flowControl: handlerFc }, { flowControl: clientFc });
    });
    after(() => f.close());

    it(`negotiates revision ${revision}`, () => {
      assert.equal(f.tunnel.protocolRevision, revision);
    });

    callKindTests(() => f);
  });
}
