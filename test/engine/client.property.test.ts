// Property-based tests of the tunnel-client engine: random server frame
// sequences while the application opens, writes and cancels streams (see
// client-fuzz.ts for the invariants).
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { clientSequence, runClientSequence } from './client-fuzz.js';
import { fuzzParameters } from './fuzz-config.js';

describe('tunnel-client engine under random frame sequences', () => {
  it('keeps every invariant', async () => {
    await fc.assert(fc.asyncProperty(clientSequence, runClientSequence), fuzzParameters(2000));
  });
});
