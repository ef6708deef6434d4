// One rule turns an error into a gRPC status, grpc-js's own for handlers,
// wherever the error comes from: a tunneled handler, the affinityKey
// callback, the authenticate callback.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { serverErrorToStatus } from '@grpc/grpc-js/build/src/server-call.js';
import { statusOfError } from '#grpctunnel/grpc/status.js';
import { unary } from '../helpers/calls.js';
import { EchoService } from '../helpers/echo-service.js';
import { forwardFixture, reverseFixture, stopAllServers } from '../helpers/servers.js';

afterEach(stopAllServers);

const denied = () => Object.assign(new Error('go away'), { code: status.PERMISSION_DENIED });

describe('error statuses', () => {
  it('follow grpc-js serverErrorToStatus for every kind of error value', () => {
    const trailer = new Metadata();
    trailer.set('x-t', '1');
    const values: object[] = [
      new Error('plain'),
      denied(),
      { code: status.NOT_FOUND, details: 'gone' },
      { code: status.NOT_FOUND, details: 'gone', message: 'ignored' },
      { code: 1.5, details: 'not an integer code', message: 'the message' },
      { code: '5', details: 'a string code', message: 'the message' },
      { code: 42, details: 'beyond the known codes' },
      { code: status.OK, details: 'ok as an error' },
      { details: 'no code' },
      {},
      Object.assign(new Error('with metadata'), { code: status.ABORTED, metadata: trailer }),
    ];
    for (const value of values) {
      const ours = statusOfError(value);
      const theirs = serverErrorToStatus(value as never);
      assert.deepEqual({ code: ours.code, details: ours.details }, { code: theirs.code, details: theirs.details });
      assert.equal(statusOfError(value, trailer).metadata, trailer);
    }
    assert.equal(statusOfError(denied()).deliberate, true);
    assert.equal(statusOfError({ code: status.OK }).deliberate, false);
    assert.equal(statusOfError({ code: 42 }).deliberate, false);
    assert.equal(statusOfError(new Error('internal')).deliberate, false);
  });

  it('the same thrown error is the same status from a handler and from the affinityKey callback', async () => {
    const forward = await forwardFixture();
    forward.handler.removeService(EchoService);
    forward.handler.addService(EchoService, {
      unary: (_call: unknown, callback: (error: Error) => void) => callback(denied()),
    });
    const fromHandler = await unary(forward.echo, Buffer.from('x'));
    assert.equal(fromHandler.error?.code, status.PERMISSION_DENIED);
    assert.equal(fromHandler.error?.details, 'go away');
    await forward.close();

    const reverse = await reverseFixture(
      {
        affinityKey: () => {
          throw denied();
        },
      },
      {},
      {},
      0,
    );
    const refused = await reverse.reverseServer.serve();
    assert.equal(refused.started, false);
    assert.equal(refused.error?.code, fromHandler.error?.code);
    assert.equal(refused.error?.details, `reverse tunnel: ${fromHandler.error?.details}`);
    await reverse.close();
  });
});
