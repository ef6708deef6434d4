// Property-based tests of the tunnel-server engine: random client frame
// sequences (see server-fuzz.ts for the invariants), then the shrunk
// counterexamples the fuzzer found, kept as named regression tests.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Code } from '#grpctunnel/engine/codes.js';
import { localStatus } from '#grpctunnel/engine/status.js';
import { fuzzParameters } from './fuzz-config.js';
import { ReceiveWindows, serverUnderTest } from './harness.js';
import { type Action, coverage, runServerSequence, sequence, windowSize } from './server-fuzz.js';

describe('tunnel-server engine under random frame sequences', () => {
  it('keeps every invariant', async () => {
    await fc.assert(fc.asyncProperty(sequence, windowSize, runServerSequence), fuzzParameters(2000));
    if (process.env.FUZZ_STATS) console.log([...coverage].sort((a, b) => b[1] - a[1]));
  });
});

describe('tunnel-server engine: counterexamples found by the fuzzer', () => {
  it('hands the window growth of streams still open back to the shared budget when the tunnel ends', async () => {
    // Shrunk counterexample: a unary stream whose reader kept up (so its
    // window grew) and whose reply waits on the client's window when the
    // tunnel ends. The growth never went back to the budget that all the
    // tunnels of a handler share, so every lost tunnel shrank it for good.
    const counterexample: Action[] = [
      { op: 'new', id: { kind: 'next', gap: 1 }, method: '/test.Echo/Unary', revision: 1, window: 100, headers: 0 },
      { op: 'message', id: { kind: 'last' }, size: 16384, chunk: 16384 },
    ];
    await runServerSequence(counterexample, 16384);

    // The same, spelled out.
    const windows = new ReceiveWindows({ initialWindowSize: 16384, windowGrowthBudget: 1 << 20 });
    const sut = serverUnderTest({ receiveWindows: windows });
    sut.feed({
      streamId: 1,
      frame: {
        $case: 'newStream',
        value: {
          methodName: '/test.Echo/Bidi',
          requestHeaders: { md: {} },
          initialWindowSize: 100,
          protocolRevision: 1,
        },
      },
    });
    sut.feed({ streamId: 1, frame: { $case: 'requestMessage', value: { size: 16384, data: Buffer.alloc(16384) } } });
    assert.ok(windows.available < 1 << 20, 'the stream kept up, so its window grew');
    sut.engine.close(localStatus(Code.UNAVAILABLE, 'tunnel lost'));
    assert.equal(windows.available, 1 << 20);
  });
});
