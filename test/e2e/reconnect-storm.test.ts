// A CI-sized reconnect storm (the full one is `npm run storm`, figures in
// BENCHMARKS.md): 100 reverse tunnels from five agent processes come back
// after their gateway restarts, within the agents' backoff bound, with no
// refused accept and no memory spike, and calls through every agent resume.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { runStorm } from '../../bench/reconnect-storm.js';

it('100 tunnels from 5 agents return after a gateway restart, within the backoff bound', async () => {
  const maxBackoffMs = 2000;
  const r = await runStorm({ agents: 5, tunnelsPerAgent: 20, maxBackoffMs });
  assert.equal(r.tunnels, 100);
  // An agent's next attempt comes at most one (jittered, +20%) maximum delay
  // after the gateway is back; allow for connection setup on a loaded machine.
  assert.ok(r.allMs <= maxBackoffMs * 1.2 + 5000, `all back in ${r.allMs} ms`);
  assert.equal(r.refused, 0, 'no accept was refused');
  assert.ok(
    r.stormPeakRssMiB <= r.steadyRssMiB + 64,
    `peak RSS ${r.stormPeakRssMiB} MiB vs ${r.steadyRssMiB} MiB before`,
  );
  assert.equal(r.callsOk, r.calls, 'a call through every agent succeeds afterwards');
});
