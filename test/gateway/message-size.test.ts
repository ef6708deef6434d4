// How large a message a call may carry through the gateway and an agent:
// by default what grpc-js allows direct (4 MiB, RESOURCE_EXHAUSTED beyond),
// and more when both sides are given a larger `maxMessageSize`.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { type Gateway, startAgent, startGateway } from 'grpctunnel-gateway';
import { collect, serverStream, unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { attachAgent, cleanups, gatewayWith, runCleanups } from '../helpers/gateway-embed.js';
import { startServer, stopServer } from '../helpers/servers.js';

afterEach(runCleanups);

const MiB = 1024 * 1024;
/** Options of a grpc-js client or server that accepts messages of up to 64 MiB. */
const LARGE = { 'grpc.max_receive_message_length': 64 * MiB, 'grpc.max_send_message_length': 64 * MiB };

/** The echo service on a grpc-js server that itself accepts large messages, so that only the tunnel's limits count. */
async function largeTarget(): Promise<string> {
  const { server, address } = await startServer((s) => s.addService(EchoService, echoImplementation()), {
    serverOptions: LARGE,
  });
  cleanups.push(() => stopServer(server));
  return address;
}

/** A caller of the gateway that itself accepts large responses. */
function caller(gw: Gateway): EchoClient {
  const c = new EchoClient(gw.listenAddress, credentials.createInsecure(), LARGE);
  cleanups.push(() => c.close());
  return c;
}

describe('message size limits through the gateway', () => {
  it('by default refuses a request over 4 MiB with RESOURCE_EXHAUSTED, as grpc-js does direct, and goes on serving', async () => {
    const target = await largeTarget();
    // Direct, a grpc-js server with default options refuses it the same way.
    const { server, address } = await startServer((s) => s.addService(EchoService, echoImplementation()));
    cleanups.push(() => stopServer(server));
    const direct = new EchoClient(address, credentials.createInsecure(), LARGE);
    cleanups.push(() => direct.close());
    const directResult = await unary(direct, Buffer.alloc(5 * MiB, 1));
    assert.equal(directResult.error?.code, status.RESOURCE_EXHAUSTED);

    const gw = await gatewayWith({});
    await attachAgent(gw, target);
    const echo = caller(gw);
    const big = await unary(echo, Buffer.alloc(5 * MiB, 1));
    assert.equal(big.error?.code, status.RESOURCE_EXHAUSTED, big.error?.message);
    const small = await unary(echo, Buffer.from('still here'));
    assert.equal(small.error, null);
    assert.equal(small.value?.toString(), 'still here');
  });

  it('by default refuses a response over 4 MiB from the target with RESOURCE_EXHAUSTED', async () => {
    const gw = await gatewayWith({});
    await attachAgent(gw, await largeTarget());
    const result = await collect(serverStream(caller(gw), 1, 5 * MiB));
    assert.equal(result.error?.code, status.RESOURCE_EXHAUSTED, result.error?.message);
  });

  it('carries larger requests and responses when the gateway and the agent both allow them', async () => {
    const gw = await gatewayWith({ maxMessageSize: 16 * MiB });
    await attachAgent(gw, await largeTarget(), { maxMessageSize: 16 * MiB });
    const echo = caller(gw);
    const payload = Buffer.alloc(10 * MiB);
    for (let i = 0; i < payload.length; i += 4096) payload[i] = i % 251;
    const md = new Metadata();
    const reply = await unary(echo, payload, md);
    assert.equal(reply.error, null, reply.error?.message);
    assert.ok(reply.value?.equals(payload), 'the 10 MiB request came back intact');
    const streamed = await collect(serverStream(echo, 2, 12 * MiB));
    assert.equal(streamed.error, null, streamed.error?.message);
    assert.deepEqual(
      streamed.messages.map((m) => m.length),
      [12 * MiB, 12 * MiB],
    );
    // The limit still holds above what was allowed.
    const tooBig = await unary(echo, Buffer.alloc(17 * MiB));
    assert.equal(tooBig.error?.code, status.RESOURCE_EXHAUSTED);
  });

  it('a larger gateway limit alone is not enough: the agent still refuses, with a status the caller sees', async () => {
    const gw = await gatewayWith({ maxMessageSize: 16 * MiB });
    await attachAgent(gw, await largeTarget());
    const result = await unary(caller(gw), Buffer.alloc(6 * MiB));
    assert.equal(result.error?.code, status.RESOURCE_EXHAUSTED, result.error?.message);
  });

  it('rejects limits that are not a whole number of bytes from 1 to 2^32 - 1', async () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 32]) {
      await assert.rejects(
        startGateway({ listen: '127.0.0.1:0', agents: '127.0.0.1:0', access: {}, maxMessageSize: bad }),
        RangeError,
        String(bad),
      );
      assert.throws(
        () =>
          startAgent({
            gateway: '127.0.0.1:1',
            target: '127.0.0.1:1',
            id: 'x',
            tunnels: 1,
            security: { insecure: true },
            maxMessageSize: bad,
          }),
        RangeError,
        String(bad),
      );
    }
  });
});
