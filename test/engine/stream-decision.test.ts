// The tunnel-server engine asks the layer above what to do with each new
// stream (onStream returns a decision) and acts on the answer itself: the
// layer above never writes the engine's stream state.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code } from '#grpctunnel/engine/codes.js';
import { localStatus, type StreamStatus } from '#grpctunnel/engine/status.js';
import type { ClientToServer } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import { serverUnderTest } from './harness.js';

const newStream = (method: string): ClientToServer => ({
  streamId: 1,
  frame: {
    $case: 'newStream',
    value: { methodName: method, requestHeaders: { md: {} }, initialWindowSize: 65536, protocolRevision: 1 },
  },
});
const request = (text: string): ClientToServer => ({
  streamId: 1,
  frame: { $case: 'requestMessage', value: { size: text.length, data: Buffer.from(text) } },
});

describe('onStream decisions', () => {
  it('a refusal closes the stream with its status and no response headers', () => {
    const sut = serverUnderTest({ onStream: () => ({ refuse: localStatus(Code.PERMISSION_DENIED, 'not you') }) });
    sut.feed(newStream('/test.Echo/Unary'));
    const frames = sut.written.filter((f) => f.streamId === 1);
    assert.deepEqual(
      frames.map((f) => f.frame?.$case),
      ['closeStream'],
    );
    const close = frames[0]?.frame;
    assert.equal(close?.$case === 'closeStream' && close.value.status?.code, Code.PERMISSION_DENIED);
    assert.equal(sut.engine.activeStreams, 0);
  });

  it('installs the handlers before start runs, and enforces singleRequest', () => {
    const cancels: StreamStatus[] = [];
    const messages: string[] = [];
    const sut = serverUnderTest({
      onStream: (stream) => ({
        singleRequest: true,
        handlers: {
          onMessage: (m) => messages.push(m.toString()),
          onHalfClose: () => {},
          onCancel: (status) => cancels.push(status),
        },
        start: () => stream.requestRead(),
      }),
    });
    sut.feed(newStream('/test.Echo/Unary'));
    sut.feed(request('one'));
    assert.deepEqual(messages, ['one']);
    sut.feed(request('two'));
    assert.deepEqual(
      cancels.map((s) => s.code),
      [Code.INVALID_ARGUMENT],
    );
  });

  it('a handler that ends the call from start is heard by its own handlers', () => {
    const cancels: StreamStatus[] = [];
    const sut = serverUnderTest({
      onStream: (stream) => ({
        handlers: { onMessage: () => {}, onHalfClose: () => {}, onCancel: (status) => cancels.push(status) },
        start: () => stream.cancel(localStatus(Code.CANCELLED, 'Call cancelled')),
      }),
    });
    sut.feed(newStream('/test.Echo/Bidi'));
    assert.deepEqual(
      cancels.map((s) => s.code),
      [Code.CANCELLED],
    );
  });
});
