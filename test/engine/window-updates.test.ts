// Window updates are written once per batch of received frames: merged per
// stream, and dropped for streams that can no longer receive data.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamId } from '#grpctunnel/engine/stream-id.js';
import { WindowUpdateBatch } from '#grpctunnel/engine/window-updates.js';

function batch(open: Set<StreamId>) {
  const sent: Array<[StreamId, number]> = [];
  const deferred: Array<() => void> = [];
  const updates = new WindowUpdateBatch(
    (id, n) => sent.push([id, n]),
    (id) => open.has(id),
    (fn) => deferred.push(fn),
  );
  const endOfBatch = () => {
    for (const fn of deferred.splice(0)) fn();
  };
  return { updates, sent, deferred, endOfBatch };
}

describe('window update batching', () => {
  it('merges the credits of a batch into one update per stream, in first-credit order', () => {
    const b = batch(new Set([1, 3]));
    b.updates.add(3, 16384);
    b.updates.add(1, 100);
    b.updates.add(3, 16384);
    assert.equal(b.sent.length, 0, 'nothing is written before the batch ends');
    assert.equal(b.deferred.length, 1, 'one flush per batch, not one per credit');
    b.endOfBatch();
    assert.deepEqual(b.sent, [
      [3, 32768],
      [1, 100],
    ]);
    b.updates.add(1, 5);
    b.endOfBatch();
    assert.deepEqual(b.sent.at(-1), [1, 5], 'the next batch starts afresh');
  });

  it('drops credit for a stream that ended or whose peer finished sending within the batch', () => {
    const open = new Set([1, 2]);
    const b = batch(open);
    b.updates.add(1, 16384);
    b.updates.add(2, 16384);
    open.delete(2);
    b.endOfBatch();
    assert.deepEqual(b.sent, [[1, 16384]]);
  });
});
