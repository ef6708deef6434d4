import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Backoff } from '#grpctunnel/reverse/backoff.js';

it('grows delays exponentially up to the bound, with jitter inside its spread', () => {
  const middle = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0.2 }, () => 0.5);
  assert.deepEqual(
    Array.from({ length: 6 }, () => middle.next()),
    [100, 200, 400, 800, 1000, 1000],
  );
  const low = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0.2 }, () => 0);
  assert.deepEqual([low.next(), low.next()], [80, 160]);
  const high = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0.2 }, () => 0.9999);
  const delays = Array.from({ length: 8 }, () => high.next());
  assert.ok(
    delays.every((d) => d <= 1000),
    'never above the bound, jitter included',
  );
  assert.equal(delays[0], 120);
});

it('starts over after reset', () => {
  const b = new Backoff({ initialDelayMs: 50, multiplier: 3, jitter: 0 });
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 50);
});
