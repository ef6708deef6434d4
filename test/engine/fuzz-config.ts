// How many random sequences the property-based tests try, and from which
// seed. CI runs the defaults (fixed seed, a few thousand sequences); a longer
// hunt sets FUZZ_RUNS (and FUZZ_SEED=random for a new seed each run), e.g.
//   FUZZ_RUNS=200000 FUZZ_SEED=random node --test dist/test/engine/server.property.test.js
// A failure prints the seed and the path to replay, and the shrunk sequence.

/** Runs and seed for fast-check, given the default run count of a test. */
export function fuzzParameters(defaultRuns: number): { numRuns: number; seed: number } {
  const runs = Number(process.env.FUZZ_RUNS ?? defaultRuns);
  const seedText = process.env.FUZZ_SEED ?? '20261130';
  const seed = seedText === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedText);
  return { numRuns: runs, seed };
}
