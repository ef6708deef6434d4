// Closing a tunnel with a status: calls in flight fail with that status
// rather than CANCELLED, `closed` and 'close' report it, and a reverse
// tunnel's RPC ends with it so the client that opened the tunnel learns why.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { afterEach, describe, it } from 'node:test';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import type { TunnelChannel } from 'grpctunnel';
import { type EchoClient, handlerStarted } from '../helpers/echo-service.js';
import { forwardFixture, reverseFixture, stopAllServers } from '../helpers/servers.js';

afterEach(stopAllServers);

/** A unary call the echo service holds until released; settles with its error (null if it succeeded). */
function heldCall(echo: EchoClient): Promise<ServiceError | null> {
  const md = new Metadata();
  md.set('x-hold', '1');
  return new Promise((resolve) => echo.unary(Buffer.from('x'), md, (error: ServiceError | null) => resolve(error)));
}

/** What a closed tunnel reports, as a comparable record. */
async function closing(tunnel: TunnelChannel, close: () => void) {
  const event = once(tunnel, 'close');
  close();
  const [emitted] = (await event) as [ServiceError | undefined];
  const settled = (await tunnel.closed) as ServiceError | undefined;
  assert.equal(emitted, settled, "the 'close' event and `closed` carry the same error");
  return settled && { code: settled.code, details: settled.details };
}

describe('closing a tunnel with a status', () => {
  it('fails the calls in flight on a forward tunnel with that status', async () => {
    const f = await forwardFixture();
    try {
      const call = heldCall(f.echo);
      await handlerStarted(f.seen, 'unary');
      const ended = await closing(f.tunnel, () =>
        f.tunnel.close({ code: status.UNAVAILABLE, details: 'closed for maintenance' }),
      );
      assert.deepEqual(ended, { code: status.UNAVAILABLE, details: 'closed for maintenance' });
      const error = await call;
      assert.equal(error?.code, status.UNAVAILABLE);
      assert.equal(error?.details, 'closed for maintenance');
      // New calls fail as on any closed tunnel.
      const late = await new Promise<ServiceError | null>((resolve) => f.echo.unary(Buffer.from('y'), resolve));
      assert.equal(late?.code, status.UNAVAILABLE);
    } finally {
      await f.close();
    }
  });

  it('without a status, keeps CANCELLED for calls and no error for `closed`, as before', async () => {
    const f = await forwardFixture();
    try {
      const call = heldCall(f.echo);
      await handlerStarted(f.seen, 'unary');
      assert.equal(await closing(f.tunnel, () => f.tunnel.close()), undefined);
      assert.equal((await call)?.code, status.CANCELLED);
    } finally {
      await f.close();
    }
  });

  it("ends a reverse tunnel's RPC with the status, so the tunnel's client hears why", async () => {
    const f = await reverseFixture();
    try {
      const [tunnel] = f.handler.allReverseTunnels();
      assert.ok(tunnel);
      const call = heldCall(f.echo);
      await handlerStarted(f.seen, 'unary');
      const ended = await closing(tunnel.channel, () =>
        tunnel.channel.close({ code: status.PERMISSION_DENIED, details: 'this client was revoked' }),
      );
      assert.deepEqual(ended, { code: status.PERMISSION_DENIED, details: 'this client was revoked' });
      const error = await call;
      assert.equal(error?.code, status.PERMISSION_DENIED);
      assert.equal(error?.details, 'this client was revoked');
      // The reverse tunnel server (the client of the tunnel RPC) gets the same status.
      const result = await f.served[0];
      assert.equal(result?.error?.code, status.PERMISSION_DENIED);
      assert.match(result?.error?.details ?? '', /this client was revoked$/);
    } finally {
      await f.close();
    }
  });

  it('refuses a status that is not a gRPC error code, and leaves the tunnel open', async () => {
    const f = await forwardFixture();
    try {
      for (const bad of [status.OK, 17, -1, 1.5, Number.NaN, '14']) {
        assert.throws(() => f.tunnel.close({ code: bad as status, details: 'x' }), RangeError, String(bad));
      }
      assert.throws(() => f.tunnel.close({ code: status.UNAVAILABLE, details: 7 as unknown as string }), TypeError);
      const reply = await new Promise<Buffer>((resolve, reject) =>
        f.echo.unary(Buffer.from('still open'), (e: ServiceError | null, r: Buffer) => (e ? reject(e) : resolve(r))),
      );
      assert.equal(reply.toString(), 'still open');
    } finally {
      await f.close();
    }
  });
});
