// Tunnels inside tunnels: a handler that hosts the tunnel service for its own
// tunneled calls, in one line without a cast (the README shows that line).
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { openTunnel, TunnelServiceHandler } from 'grpctunnel';
import { TunnelServiceDefinition } from 'grpctunnel/protocol';
import { unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { startServer, stopAllServers } from '../helpers/servers.js';

afterEach(stopAllServers);

it('a tunnel opened through a tunnel carries calls, with handler.addService(TunnelServiceDefinition, handler.implementation)', async () => {
  const handler = new TunnelServiceHandler();
  handler.addService(EchoService, echoImplementation());
  handler.addService(TunnelServiceDefinition, handler.implementation);
  const { address } = await startServer((s) => handler.register(s));
  const connection = new EchoClient(address, credentials.createInsecure());
  const outer = await openTunnel(connection);
  const inner = await openTunnel(outer);
  try {
    const echo = new EchoClient('nested', credentials.createInsecure(), { channelOverride: inner });
    const reply = await unary(echo, Buffer.from('two tunnels deep'));
    assert.equal(reply.value?.toString(), 'two tunnels deep');
    assert.equal(handler.openTunnels, 2, 'the outer tunnel, and the inner one served through it');
  } finally {
    inner.close();
    outer.close();
    await inner.closed;
    await outer.closed;
    connection.close();
  }
});
