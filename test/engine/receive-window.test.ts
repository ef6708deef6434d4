// Window growth on the receive side: a stream whose reader keeps up is
// granted more window, a stalled one is not, and the tunnel's budget bounds
// the total. Driven through InboundStream with a simulated sender that
// obeys the window, as a peer does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_CHUNK_SIZE } from '#grpctunnel/engine/constants.js';
import { InboundStream } from '#grpctunnel/engine/inbound.js';
import { type ReceiveWindowOptions, ReceiveWindows } from '#grpctunnel/engine/receive-window.js';

const KiB = 1024;

/** One stream with a sender that sends 16 KiB messages whenever its window allows. */
function stream(windows: ReceiveWindows, { keepsUp }: { keepsUp: boolean }) {
  const updates: number[] = [];
  let delivered = 0;
  let peerWindow = windows.initial;
  const inbound: InboundStream = new InboundStream({
    windows,
    maxMessageSize: 4 * 1024 * KiB,
    endNeedsRead: false,
    sendWindowUpdate: (n) => {
      updates.push(n);
      peerWindow += n;
    },
    deliver: (m) => {
      delivered += m.length;
      if (keepsUp) inbound.requestRead();
    },
  });
  if (keepsUp) inbound.requestRead();
  const chunk = new Uint8Array(MAX_CHUNK_SIZE);
  return {
    inbound,
    updates,
    get delivered() {
      return delivered;
    },
    /** What the sender is still allowed to send. */
    get peerWindow() {
      return peerWindow;
    },
    /** Sends up to `bytes`, as far as the window lets it. */
    send(bytes: number) {
      let sent = 0;
      while (sent < bytes && peerWindow >= MAX_CHUNK_SIZE) {
        peerWindow -= MAX_CHUNK_SIZE;
        inbound.messageStart(MAX_CHUNK_SIZE, chunk);
        sent += MAX_CHUNK_SIZE;
      }
      return sent;
    },
  };
}

const credited = (updates: number[]) => updates.reduce((a, b) => a + b, 0);

describe('receive window growth', () => {
  it('doubles the window of a stream whose reader keeps up, up to the maximum', () => {
    const windows = new ReceiveWindows({ maxWindowSize: 1024 * KiB });
    const s = stream(windows, { keepsUp: true });
    assert.equal(s.peerWindow, 64 * KiB);
    s.send(8 * 1024 * KiB);
    assert.equal(s.delivered, 8 * 1024 * KiB, 'every byte the window allowed was delivered');
    // The window grew to 1 MiB: the sender holds it, less the consumed bytes
    // still gathering toward the next update (under a quarter of the window).
    assert.ok(s.peerWindow > 768 * KiB && s.peerWindow <= 1024 * KiB, `sender's window ${s.peerWindow}`);
    assert.equal(credited(s.updates) - s.delivered, s.peerWindow - 64 * KiB, 'credit beyond consumption is growth');
    // Updates grew with the window: a quarter of it once grown.
    assert.equal(s.updates[0], 16 * KiB);
    assert.equal(
      Math.max(...s.updates),
      128 * KiB + 512 * KiB,
      'the last doubling (512 KiB) rides on an update at the 512 KiB window threshold (128 KiB)',
    );
    assert.equal(s.updates.at(-1), 256 * KiB, 'a 1 MiB window is credited in 256 KiB updates');
    assert.equal(windows.available, 16 * 1024 * KiB - (1024 - 64) * KiB);
    s.inbound.release();
    assert.equal(windows.available, 16 * 1024 * KiB, 'growth is handed back when the stream ends');
  });

  it('does not grow the window of a stream whose reader falls behind', () => {
    const windows = new ReceiveWindows();
    const s = stream(windows, { keepsUp: false });
    assert.equal(s.send(1024 * KiB), 64 * KiB, 'the sender stops at the initial window');
    assert.equal(s.updates.length, 0, 'nothing consumed, nothing credited');
    assert.throws(() => s.inbound.messageStart(1, new Uint8Array(1)), /flow control window exceeded/);
    // The reader now takes one message at a time, with the rest still queued behind it.
    for (let i = 0; i < 4; i++) s.inbound.requestRead();
    assert.equal(s.delivered, 64 * KiB);
    assert.equal(credited(s.updates), 64 * KiB, 'credit equals what was consumed: no growth');
    assert.equal(windows.available, 16 * 1024 * KiB);
  });

  it('caps the growth of all streams of a tunnel with its budget', () => {
    const windows = new ReceiveWindows({ maxWindowSize: 1024 * KiB, windowGrowthBudget: 256 * KiB });
    const a = stream(windows, { keepsUp: true });
    const b = stream(windows, { keepsUp: true });
    a.send(8 * 1024 * KiB);
    b.send(8 * 1024 * KiB);
    assert.equal(windows.available, 0, 'the budget is spent');
    assert.ok(a.peerWindow > 64 * KiB, 'the first stream grew');
    assert.ok(a.peerWindow + b.peerWindow <= 2 * 64 * KiB + 256 * KiB, 'together within the initial windows + budget');
    a.inbound.release();
    assert.ok(windows.available > 0, 'an ended stream returns its growth');
    b.send(8 * 1024 * KiB);
    assert.equal(windows.available, 0, 'the other stream takes what was returned');
  });

  it('keeps windows fixed when the maximum is the initial window, as the Go reference does', () => {
    const windows = new ReceiveWindows({ maxWindowSize: 64 * KiB });
    const s = stream(windows, { keepsUp: true });
    s.send(4 * 1024 * KiB);
    assert.equal(credited(s.updates), 4 * 1024 * KiB, 'credit equals consumption');
    assert.ok(s.updates.every((n) => n === 16 * KiB));
  });

  it('refuses window settings a uint32 window cannot carry', () => {
    const bad: ReceiveWindowOptions[] = [
      { initialWindowSize: 0 },
      { initialWindowSize: 2 ** 31 },
      { maxWindowSize: 1.5 },
      { windowUpdateThreshold: -1 },
      { windowGrowthBudget: Number.NaN },
    ];
    for (const options of bad) assert.throws(() => new ReceiveWindows(options), RangeError);
  });
});

describe('receive window after the stream ends', () => {
  it('hands growth back once, and neither grows nor credits while queued messages are read', () => {
    const windows = new ReceiveWindows({ maxWindowSize: 1024 * KiB });
    const s = stream(windows, { keepsUp: true });
    s.send(4 * 1024 * KiB);
    assert.ok(windows.available < 16 * 1024 * KiB, 'the stream grew');
    // The end arrives with messages still queued: a reader that was not waiting.
    const lagging = stream(windows, { keepsUp: false });
    lagging.send(64 * KiB);
    s.inbound.release();
    lagging.inbound.release();
    lagging.inbound.release();
    assert.equal(windows.available, 16 * 1024 * KiB, 'all growth is back, counted once');
    const updates = lagging.updates.length;
    for (let i = 0; i < 4; i++) lagging.inbound.requestRead();
    assert.equal(lagging.delivered, 64 * KiB, 'queued messages are still delivered');
    assert.equal(lagging.updates.length, updates, 'no credit for a stream that is over');
    assert.equal(windows.available, 16 * 1024 * KiB, 'and no growth taken after the end');
  });
});
