// Differential tests of final statuses: the same outcome of one grpc-js
// service, seen by a grpc-js caller directly, through a forward tunnel,
// through a reverse tunnel, and through the command-line gateway and agent,
// must look the same: code, message and grpc-status-details-bin bytes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type Client,
  credentials,
  type handleUnaryCall,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  type StatusObject,
  status,
} from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, type ServeResult, TunnelServiceHandler } from 'grpctunnel';
import { Status as RpcStatus } from '#grpctunnel/gen/google/rpc/status.js';
import {
  type CliProcess,
  freePort,
  type GatewayProcess,
  startAgentCli,
  startGatewayCli,
  waitForAgent,
} from '../helpers/cli.js';
import { methodDefinition, rawBytesCodec } from '../helpers/method-definition.js';
import { startServer, stopServer } from '../helpers/servers.js';

const KEY = 'grpc-status-details-bin';

/** What the service is asked to end a call with. */
interface Outcome {
  code: number;
  message: string;
  /** grpc-status-details-bin values, hex. */
  bins: string[];
  /** Every trailer the caller sees (the service adds x-trailer-bin and x-trailer), -bin values as hex. */
  trailers?: Record<string, string[]>;
}

const StatusService = { fail: methodDefinition('test.Status', 'Fail', false, false, rawBytesCodec) };
type StatusClient = Client & { fail: (...args: unknown[]) => ReturnType<Client['makeUnaryRequest']> };
const StatusClient = makeGenericClientConstructor(StatusService, 'Status') as unknown as new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options?: object,
) => StatusClient;

/** Ends each call with the outcome its request (JSON) describes. */
const fail: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
  const want = JSON.parse(call.request.toString('utf8')) as Outcome;
  const trailers = new Metadata();
  for (const hex of want.bins) trailers.add(KEY, Buffer.from(hex, 'hex'));
  trailers.set('x-trailer', 'kept');
  trailers.set('x-trailer-bin', Buffer.from([0, 1, 254, 255]));
  if (want.code === status.OK) callback(null, Buffer.from('ok'), trailers);
  else callback({ code: want.code, details: want.message, metadata: trailers } as Partial<ServiceError>);
};

/** Calls Fail and reports what the caller sees in the final status. */
function observe(client: StatusClient, want: Outcome): Promise<Outcome> {
  return new Promise((resolve) => {
    let seen: StatusObject | undefined;
    let answered = false;
    const done = () => {
      if (seen && answered) {
        resolve({
          code: seen.code,
          message: seen.details,
          bins: seen.metadata.get(KEY).map((v) => Buffer.from(v as Buffer).toString('hex')),
          trailers: Object.fromEntries(
            Object.entries(seen.metadata.toJSON())
              // A direct trailers-only response merges the HTTP/2 response
              // headers into the trailers; they belong to the hop.
              .filter(([k]) => k !== 'content-type' && k !== 'date')
              .map(([k, vs]) => [
                k,
                (vs as Array<string | Buffer>).map((v) => (typeof v === 'string' ? v : v.toString('hex'))),
              ]),
          ),
        });
      }
    };
    const call = client.fail(Buffer.from(JSON.stringify(want)), new Metadata(), {}, () => {
      answered = true;
      done();
    });
    call.on('status', (s: StatusObject) => {
      seen = s;
      done();
    });
  });
}

const rpcStatus = (code: number, message: string, details: Array<{ typeUrl: string; value: Buffer }>) =>
  Buffer.from(RpcStatus.encode({ code, message, details }).finish()).toString('hex');
const detail = { typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from('0a03626164', 'hex') };

/** grpc-status-details-bin cases that grpc-js passes on unchanged. */
const DETAIL_CASES: Array<[string, Outcome]> = [
  ['a Status matching the call, with details', { code: 5, message: 'gone', bins: [rpcStatus(5, 'gone', [detail])] }],
  ['a Status without details', { code: 5, message: 'gone', bins: [rpcStatus(5, 'gone', [])] }],
  ['a Status whose code and message differ', { code: 5, message: 'gone', bins: [rpcStatus(9, 'other', [detail])] }],
  ['bytes that are not a Status', { code: 3, message: 'bad', bins: ['ffff00'] }],
  ['a Status with an unknown field', { code: 5, message: 'gone', bins: [`${rpcStatus(5, 'gone', [detail])}2001`] }],
  ['a trailer on an OK call', { code: 0, message: 'OK', bins: [rpcStatus(0, '', [detail])] }],
];

/** Messages HTTP/2 cannot carry raw, and some it can. */
const MESSAGE_CASES = [
  ' leading space',
  'trailing space ',
  '  both  ',
  '100% sure, %41 stays',
  'naïve ünïcode ✓ 日本',
  'line one\nline two\r\n',
  'tab\there',
  'reserved #;/?:@&=+$, chars',
  ' ',
];

describe('final statuses: direct, forward tunnel, reverse tunnel and gateway agree', () => {
  const paths: Record<string, StatusClient> = {};
  const cleanup: Array<() => Promise<unknown> | unknown> = [];
  let gw: GatewayProcess;
  let agent: CliProcess;

  before(async () => {
    const target = await startServer((s) => s.addService(StatusService, { fail }));
    cleanup.push(() => stopServer(target.server));
    paths.direct = new StatusClient(target.address, credentials.createInsecure());

    const forwardHandler = new TunnelServiceHandler();
    forwardHandler.addService(StatusService, { fail });
    const forward = await startServer((s) => forwardHandler.register(s));
    cleanup.push(() => stopServer(forward.server));
    const connection = new StatusClient(forward.address, credentials.createInsecure());
    cleanup.push(() => connection.close());
    const tunnel = await openTunnel(connection);
    cleanup.push(() => tunnel.close());
    paths.forward = new StatusClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });

    const reverseHandler = new TunnelServiceHandler();
    const reverse = await startServer((s) => reverseHandler.register(s));
    cleanup.push(() => stopServer(reverse.server));
    const reverseConnection = new StatusClient(reverse.address, credentials.createInsecure());
    const reverseServer = new ReverseTunnelServer(reverseConnection);
    reverseServer.addService(StatusService, { fail });
    const opened = new Promise<void>((resolve) => reverseHandler.once('reverseTunnelOpen', () => resolve()));
    const served: Promise<ServeResult> = reverseServer.serve();
    await opened;
    cleanup.push(async () => {
      reverseServer.stop();
      await served;
      reverseConnection.close();
    });
    paths.reverse = new StatusClient('pool', credentials.createInsecure(), {
      channelOverride: reverseHandler.asChannel(),
    });

    gw = await startGatewayCli();
    agent = startAgentCli(gw.agents, target.address, 'st', ['--tunnels', '1']);
    await waitForAgent(gw.admin, 'st', 1);
    paths.gateway = new StatusClient(gw.listen, credentials.createInsecure());
  });

  after(async () => {
    for (const client of Object.values(paths)) client.close();
    await agent?.stop();
    await gw?.p.stop();
    for (const step of cleanup.reverse()) await step();
  });

  async function differential(want: Outcome): Promise<void> {
    const direct = await observe(paths.direct as StatusClient, want);
    for (const name of ['forward', 'reverse', 'gateway']) {
      const seen = await observe(paths[name] as StatusClient, want);
      // A grpc-js server says "OK" on success; the tunnel protocol carries no
      // message for OK (as the Go reference), so only failures compare it.
      if (want.code === status.OK) seen.message = direct.message;
      assert.deepEqual(seen, direct, `${name} vs direct for ${JSON.stringify(want)}`);
    }
  }

  for (const [name, want] of DETAIL_CASES) {
    it(`passes grpc-status-details-bin byte for byte: ${name}`, () => differential(want));
  }

  for (const message of MESSAGE_CASES) {
    it(`shows the message ${JSON.stringify(message)} as a direct call does`, () =>
      differential({ code: status.FAILED_PRECONDITION, message, bins: [] }));
  }

  it('names the reason when the agent cannot reach its target', async () => {
    const down = `127.0.0.1:${await freePort()}`;
    const lost = startAgentCli(gw.agents, down, 'down', ['--tunnels', '1']);
    try {
      await waitForAgent(gw.admin, 'down', 1);
      const md = new Metadata();
      md.set('grpctunnel-agent', 'down');
      const seen = await new Promise<ServiceError | null>((resolve) =>
        (paths.gateway as StatusClient).fail(Buffer.from('{}'), md, {}, resolve),
      );
      assert.equal(seen?.code, status.UNAVAILABLE);
      assert.match(seen?.details ?? '', /ECONNREFUSED|No connection established/);
    } finally {
      await lost.stop();
    }
  });
});
