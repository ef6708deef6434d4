// What a stream's unsent messages are told when the stream ends: the error
// is built only when some message is left to tell (an Error's stack costs
// microseconds, and nearly every call ends with nothing pending).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerFrame as ServerToClient } from '#grpctunnel/engine/frames.js';
import { serverDataFrames } from '#grpctunnel/engine/frames.js';
import { OutboundStream, SendScheduler } from '#grpctunnel/engine/outbound.js';

describe('discarding a stream', () => {
  it('makes the reason only when a message is left to tell, once for all of them', () => {
    const written: ServerToClient[] = [];
    const scheduler = new SendScheduler<ServerToClient>((f) => written.push(f) > 0, serverDataFrames);
    let made = 0;
    const reason = () => {
      made++;
      return new Error('the stream has ended');
    };

    const idle = new OutboundStream<ServerToClient>(1, 1 << 20);
    scheduler.sendMessage(idle, Buffer.alloc(10), () => {});
    idle.discard(reason);
    assert.equal(made, 0, 'everything was written: no error is made');

    // No window: both messages stay queued.
    const stuck = new OutboundStream<ServerToClient>(3, 0);
    const told: unknown[] = [];
    scheduler.sendMessage(stuck, Buffer.alloc(10), (err) => told.push(err));
    scheduler.sendMessage(stuck, Buffer.alloc(10), (err) => told.push(err));
    stuck.discard(reason);
    assert.equal(made, 1);
    assert.equal(told.length, 2);
    assert.ok(told[0] instanceof Error && told[0].message === 'the stream has ended');
    assert.equal(told[1], told[0]);
  });

  it('still takes an error made beforehand', () => {
    const scheduler = new SendScheduler<ServerToClient>(() => true, serverDataFrames);
    const stuck = new OutboundStream<ServerToClient>(1, 0);
    const told: unknown[] = [];
    scheduler.sendMessage(stuck, Buffer.alloc(10), (err) => told.push(err));
    const error = new Error('cancelled');
    stuck.discard(error);
    assert.deepEqual(told, [error]);
  });
});
