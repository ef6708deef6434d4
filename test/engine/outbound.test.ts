// The send scheduler cuts messages into chunks no larger than the size it was
// given (the grpc-js adapters ask for less than the protocol's 16 KiB).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_EXTENDED_CHUNK_SIZE } from '#grpctunnel/engine/constants.js';
import type { ServerFrame as ServerToClient } from '#grpctunnel/engine/frames.js';
import { serverDataFrames } from '#grpctunnel/engine/frames.js';
import { OutboundStream, SendScheduler } from '#grpctunnel/engine/outbound.js';

function chunksOf(frames: ServerToClient[]): number[] {
  return frames.map((f) => {
    if (f.frame?.$case === 'responseMessage') return f.frame.value.data.length;
    if (f.frame?.$case === 'moreResponseData') return f.frame.value.length;
    return -1;
  });
}

describe('send scheduler chunking', () => {
  it('cuts at 16384 bytes by default and at the given size otherwise', () => {
    for (const [size, expected] of [
      [undefined, [16384, 16384, 7232]],
      [16352, [16352, 16352, 7296]],
    ] as const) {
      const written: ServerToClient[] = [];
      const scheduler = new SendScheduler<ServerToClient>((f) => written.push(f) > 0, serverDataFrames, size);
      const stream = new OutboundStream<ServerToClient>(1, 1 << 20);
      scheduler.sendMessage(stream, Buffer.alloc(40_000));
      assert.deepEqual(chunksOf(written), expected);
    }
  });

  it('still sends a shorter chunk when the window is smaller than the chunk size', () => {
    const written: ServerToClient[] = [];
    const scheduler = new SendScheduler<ServerToClient>((f) => written.push(f) > 0, serverDataFrames, 16352);
    const stream = new OutboundStream<ServerToClient>(1, 20_000);
    scheduler.sendMessage(stream, Buffer.alloc(40_000));
    assert.deepEqual(chunksOf(written), [16352, 3648]);
    scheduler.addWindow(stream, 30_000);
    assert.deepEqual(chunksOf(written), [16352, 3648, 16352, 3648]);
  });

  it('refuses chunk sizes the protocol does not allow', () => {
    const write = () => true;
    for (const bad of [0, -1, MAX_EXTENDED_CHUNK_SIZE + 1, 1.5]) {
      assert.throws(() => new SendScheduler<ServerToClient>(write, serverDataFrames, bad), RangeError);
    }
  });
});
