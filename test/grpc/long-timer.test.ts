import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import { MAX_TIMER_MS, setLongTimeout } from '#grpctunnel/grpc/long-timer.js';

it('a delay beyond 2^31-1 ms waits its whole length, without a TimeoutOverflowWarning', () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    let fired = 0;
    const thirtyDays = 30 * 24 * 3_600_000;
    setLongTimeout(() => fired++, thirtyDays);
    mock.timers.tick(MAX_TIMER_MS);
    assert.equal(fired, 0);
    mock.timers.tick(thirtyDays - MAX_TIMER_MS - 1);
    assert.equal(fired, 0);
    mock.timers.tick(1);
    assert.equal(fired, 1);
    mock.timers.tick(thirtyDays);
    assert.equal(fired, 1);
  } finally {
    mock.timers.reset();
    process.off('warning', onWarning);
  }
  assert.deepEqual(
    warnings.map((w) => w.name),
    [],
  );
});

it('clear() stops a long timer and an infinite delay never fires', () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    let fired = 0;
    const timer = setLongTimeout(() => fired++, 3 * MAX_TIMER_MS);
    mock.timers.tick(MAX_TIMER_MS + 5);
    timer.clear();
    timer.clear();
    mock.timers.tick(3 * MAX_TIMER_MS);
    setLongTimeout(() => fired++, Number.POSITIVE_INFINITY).clear();
    assert.equal(fired, 0);
  } finally {
    mock.timers.reset();
  }
});
