// A server's close_stream that arrives while complete response messages are
// still queued unread (they came in the same burst, before the reader asked
// for them) must not strand them: each is delivered on the reader's next
// request, then the status. Found when a node:http2 tunnel server wrote a
// handler's last messages and its close in one DATA frame: the call hung.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code } from '#grpctunnel/engine/codes.js';
import type { StreamStatus } from '#grpctunnel/engine/status.js';
import { TunnelClientEngine } from '#grpctunnel/engine/tunnel-client.js';

describe('tunnel client: close_stream behind unread messages', () => {
  it('delivers every queued message on request, then the status', () => {
    const engine = new TunnelClientEngine({
      negotiated: false,
      onReady: () => {},
      onProtocolError: () => assert.fail('no protocol error expected'),
      write: () => true,
    });
    engine.start();
    const messages: string[] = [];
    const closes: StreamStatus[] = [];
    const stream = engine.openStream(
      '/test.Echo/Stream',
      { md: {} },
      {
        onHeaders: () => {},
        onMessage: (m) => messages.push(m.toString()),
        onClose: (s) => closes.push(s),
      },
    );
    const id = stream.streamId;
    stream.requestRead();
    // One burst: the first message meets a waiting reader, the other two queue, then the close.
    engine.handleFrame({ streamId: id, frame: { $case: 'responseHeaders', value: { md: {} } } });
    for (const text of ['one', 'two', 'three']) {
      engine.handleFrame({
        streamId: id,
        frame: { $case: 'responseMessage', value: { size: text.length, data: Buffer.from(text) } },
      });
    }
    engine.handleFrame({
      streamId: id,
      frame: {
        $case: 'closeStream',
        value: { responseTrailers: undefined, status: { code: 0, message: '', details: [] } },
      },
    });
    assert.deepEqual(messages, ['one']);
    assert.equal(closes.length, 0, 'the status waits for the queued messages');
    stream.requestRead();
    stream.requestRead();
    assert.deepEqual(messages, ['one', 'two', 'three']);
    assert.equal(closes.length, 1);
    assert.equal(closes[0]?.code, Code.OK);
    assert.equal(engine.activeStreams, 0);
  });
});
