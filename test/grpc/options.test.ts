// Window settings a tunnel cannot use are refused where the user passes them,
// not later when a tunnel arrives.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Client, credentials } from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, TunnelServiceHandler } from 'grpctunnel';

describe('tunnel options', () => {
  it('refuse impossible window settings at once, with a RangeError', async () => {
    assert.throws(() => new TunnelServiceHandler({ initialWindowSize: 0 }), RangeError);
    assert.throws(() => new TunnelServiceHandler({ windowGrowthBudget: -1 }), RangeError);
    // Nothing listens here: construction and a refused openTunnel must not dial.
    const client = new Client('127.0.0.1:9', credentials.createInsecure());
    try {
      assert.throws(() => new ReverseTunnelServer(client, { maxWindowSize: 2 ** 32 }), RangeError);
      await assert.rejects(openTunnel(client, { windowUpdateThreshold: 0.5 }), RangeError);
      assert.doesNotThrow(() => new TunnelServiceHandler({ initialWindowSize: 1 << 20, maxWindowSize: 1 << 20 }));
    } finally {
      client.close();
    }
  });
});
