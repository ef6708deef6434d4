// The 10-minute check, outside `npm test` (it is skipped unless
// GRPCTUNNEL_LONG_KEEPALIVE=1): with the default settings, an idle forward
// tunnel toward a server enforcing grpc-go's default ping policy (MinTime
// 5 minutes, no keepalive advertisement) stays up for 10 minutes, pinged
// every 5 minutes 10 seconds, and never gets GOAWAY too_many_pings.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { connectivityState, credentials } from '@grpc/grpc-js';
import { openTunnel } from 'grpctunnel';
import { EchoClient } from '../helpers/echo-service.js';
import { startGoPolicyServer } from '../helpers/go-ping-policy.js';

const RUN_MS = 10.75 * 60_000;

it('an idle tunnel under the grpc-go default ping policy survives 10 minutes', {
  skip: process.env.GRPCTUNNEL_LONG_KEEPALIVE !== '1',
  timeout: RUN_MS + 60_000,
}, async () => {
  const server = await startGoPolicyServer({});
  const connection = new EchoClient(server.address, credentials.createInsecure());
  const tunnel = await openTunnel(connection);
  const started = Date.now();
  const pingTimes: number[] = [];
  let seen = 0;
  const timer = setInterval(() => {
    while (seen < server.pings) {
      seen++;
      pingTimes.push(Math.round((Date.now() - started) / 1000));
    }
  }, 1000);
  // The point of the test is the passing of time: nothing to wait on but the clock.
  await new Promise((resolve) => setTimeout(resolve, RUN_MS));
  clearInterval(timer);
  console.log(`pings at ~${pingTimes.join(', ')} s; goaways ${server.goaways}`);
  assert.equal(server.goaways, 0);
  assert.equal(server.pings, 2);
  assert.equal(tunnel.getConnectivityState(false), connectivityState.READY);
  tunnel.close();
  connection.close();
  await server.close();
});
