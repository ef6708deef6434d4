// One vocabulary for ending things, grpc-js's: servers (the handler and the
// reverse tunnel server) have tryShutdown (graceful, a promise, an
// AbortSignal that forces it) and forceShutdown (now); channels close().
// A forced shutdown looks to callers and handlers as grpc-js's own does.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  type Client,
  type ClientUnaryCall,
  credentials,
  Metadata,
  makeGenericClientConstructor,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { createTunnelClient } from 'grpctunnel';
import { EchoClient, type EchoObservations, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { forwardFixture, reverseFixture, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

afterEach(stopAllServers);

const delayed = (ms: number) => {
  const md = new Metadata();
  md.set('x-delay-ms', String(ms));
  return md;
};

const bytes = (b: Buffer) => b;
const HoldService = {
  hold: {
    path: '/shutdowntest.Hold/Hold',
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  },
};
const HoldClient = makeGenericClientConstructor(HoldService, 'Hold') as unknown as new (
  ...args: ConstructorParameters<ReturnType<typeof makeGenericClientConstructor>>
) => Client & { hold: (request: Buffer, callback: (error: ServiceError | null) => void) => ClientUnaryCall };

/** A unary call whose `running` settles once its handler has started (the echo handler sends headers first). */
function startCall(echo: EchoClient, md: Metadata) {
  let onRunning: () => void = () => {};
  const running = new Promise<void>((resolve) => {
    onRunning = resolve;
  });
  const done = new Promise<{ code: number | undefined; details: string | undefined }>((resolve) => {
    const call = echo.unary(Buffer.from('x'), md, (error: ServiceError | null) =>
      resolve({ code: error?.code ?? status.OK, details: error?.details }),
    );
    call.on('metadata', () => onRunning());
  });
  return { running, done };
}

/** Resolves once `seen` has recorded a cancelled unary handler (bounded poll: the observation has no event). */
async function handlerCancelled(seen: EchoObservations): Promise<boolean> {
  for (let i = 0; i < 500 && !seen.cancelled.includes('unary'); i++) await new Promise(setImmediate);
  return seen.cancelled.includes('unary');
}

describe('shutdown vocabulary', () => {
  it('handler.forceShutdown cancels a running call as grpc-js server.forceShutdown does', async () => {
    // Direct: a grpc-js server hosting the service itself.
    const directSeen: EchoObservations = { cancelled: [] };
    const { server, address } = await startServer((s) => s.addService(EchoService, echoImplementation(directSeen)));
    const direct = new EchoClient(address, credentials.createInsecure());
    const directCall = startCall(direct, delayed(60_000));
    await directCall.running;
    server.forceShutdown();
    const directOutcome = await directCall.done;
    const directCancelled = await handlerCancelled(directSeen);
    direct.close();

    // Through a forward tunnel: the handler hosts the service.
    const f = await forwardFixture();
    const tunneled = startCall(f.echo, delayed(60_000));
    await tunneled.running;
    f.handler.forceShutdown();
    const tunneledOutcome = await tunneled.done;
    const tunneledCancelled = await handlerCancelled(f.seen);

    assert.deepEqual(tunneledOutcome, directOutcome);
    assert.deepEqual(directOutcome, { code: status.CANCELLED, details: 'Call cancelled' });
    assert.equal(tunneledCancelled, directCancelled);
    assert.equal(directCancelled, true);
    assert.ok((await f.tunnel.closed) instanceof Error, 'the tunnel ended');
    assert.equal(f.handler.openTunnels, 0);
    await f.close();
    await stopServer(server);
  });

  it('handler.tryShutdown resolves only after running calls have finished and every tunnel has ended', async () => {
    const f = await forwardFixture();
    // A method that answers when the test says so: the shutdown's wait is then observable without timers.
    let answer: () => void = () => {};
    f.handler.addService(HoldService, {
      hold: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        call.sendMetadata(new Metadata());
        answer = () => callback(null, Buffer.from('done'));
      },
    });
    const hold = createTunnelClient(HoldClient, f.tunnel);
    let running: () => void = () => {};
    const started = new Promise<void>((resolve) => {
      running = resolve;
    });
    const held = new Promise<ServiceError | null>((resolve) => {
      const call = hold.hold(Buffer.from('x'), (error: ServiceError | null) => resolve(error));
      call.on('metadata', () => running());
    });
    await started;
    let shutDown = false;
    const shuttingDown = f.handler.tryShutdown().then(() => {
      shutDown = true;
    });
    // A whole round trip through the tunnel later, the running call still holds the shutdown.
    const refused = await startCall(f.echo, new Metadata()).done;
    assert.equal(refused.code, status.UNAVAILABLE);
    assert.equal(shutDown, false);
    answer();
    assert.equal(await held, null);
    await shuttingDown;
    assert.equal(f.handler.openTunnels, 0);
    assert.equal(f.handler.activeCalls, 0);
    // A later call resolves at once: nothing is left to wait for.
    await f.handler.tryShutdown();
    await f.close();
  });

  it('handler.tryShutdown with an aborted signal forces the shutdown', async () => {
    const f = await reverseFixture();
    const call = startCall(f.echo, delayed(60_000));
    await call.running;
    const controller = new AbortController();
    const shutDown = f.handler.tryShutdown({ signal: controller.signal });
    controller.abort();
    const outcome = await call.done;
    assert.equal(outcome.code, status.CANCELLED);
    await shutDown;
    assert.equal(f.handler.openReverseTunnels, 0);
    await f.close();
  });

  it('the reverse tunnel server has the same words: tryShutdown and forceShutdown', async () => {
    const graceful = await reverseFixture();
    const running = startCall(graceful.echo, delayed(100));
    await running.running;
    await graceful.reverseServer.tryShutdown();
    assert.equal((await running.done).code, status.OK);
    assert.deepEqual(await graceful.served[0], { started: true });
    await graceful.close();

    const forced = await reverseFixture();
    const cancelled = startCall(forced.echo, delayed(60_000));
    await cancelled.running;
    forced.reverseServer.forceShutdown();
    assert.deepEqual(await forced.served[0], { started: true });
    assert.notEqual((await cancelled.done).code, status.OK);
    assert.equal(await handlerCancelled(forced.seen), true);
    await forced.close();
  });
});
