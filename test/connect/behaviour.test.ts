// Differential: every scenario runs against Connect's own gRPC transport and
// Node server (the reference) and against each way grpctunnel carries Connect
// (a Connect client through a forward tunnel or a reverse-tunnel pool, the
// Connect implementation served by the handler, the reverse tunnel server or
// a grpc-js server); what the client and the implementation observe must be equal.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError, decodeBinaryHeader, encodeBinaryHeader } from '@connectrpc/connect';
import { stopAllServers } from '../helpers/servers.js';
import { connectNodeEnv, ENVIRONMENTS, type Env } from './environments.js';
import { type EchoRequest, ErrorDetailSchema } from './gen/connecttest/echo_pb.js';

type Req = Partial<Pick<EchoRequest, 'text' | 'repeat' | 'failCode' | 'failMessage' | 'failPlain' | 'hang'>>;

const SENT_BYTES = new Uint8Array([9, 8, 7, 0, 255]);
const headers = { 'x-ascii': 'v1', 'x-data-bin': encodeBinaryHeader(SENT_BYTES) };

/** The application headers (x-...) of a Headers, binary ones decoded. */
function appHeaders(h: Headers): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  h.forEach((value, key) => {
    if (key.startsWith('x-')) out[key] = key.endsWith('-bin') ? [...decodeBinaryHeader(value)] : value;
  });
  return out;
}

function errorOf(e: unknown) {
  assert.ok(e instanceof ConnectError, `not a ConnectError: ${e}`);
  return {
    code: Code[e.code],
    message: e.rawMessage,
    details: e.findDetails(ErrorDetailSchema).map((d) => ({ reason: d.reason, attempt: d.attempt })),
    metadata: appHeaders(e.metadata),
  };
}

async function* from(reqs: Req[]): AsyncGenerator<Req> {
  yield* reqs;
}

/** Runs a call, recording headers, trailers, replies and the error as plain data. */
async function observe(
  run: (
    opts: { headers: Record<string, string>; onHeader(h: Headers): void; onTrailer(h: Headers): void },
    replies: unknown[],
  ) => Promise<void>,
) {
  const seen: Record<string, unknown> = {};
  const replies: unknown[] = [];
  try {
    await run(
      { headers, onHeader: (h) => (seen.header = appHeaders(h)), onTrailer: (h) => (seen.trailer = appHeaders(h)) },
      replies,
    );
  } catch (e) {
    seen.error = errorOf(e);
  }
  return { ...seen, replies };
}

const plain = (m: { text: string; index: number }) => ({ text: m.text, index: m.index });

/** Each scenario returns what a user could observe of it. */
const SCENARIOS: Record<string, (env: Env) => Promise<unknown>> = {
  'unary with ASCII and binary metadata': (env) =>
    observe(async (opts, replies) => {
      replies.push(plain(await env.client.unary({ text: 'hi' }, opts)));
    }),
  'unary with a timeout that does not expire': (env) =>
    observe(async (opts, replies) => {
      replies.push(plain(await env.client.unary({ text: 'hi' }, { ...opts, timeoutMs: 30_000 })));
    }),
  'unary failing with a ConnectError with details': (env) =>
    observe(async (opts) => {
      await env.client.unary({ failCode: Code.FailedPrecondition, failMessage: 'no way: 100% ünicode' }, opts);
    }),
  'unary failing with a plain Error': (env) =>
    observe(async (opts) => {
      await env.client.unary({ failPlain: true }, opts);
    }),
  'client stream': (env) =>
    observe(async (opts, replies) => {
      replies.push(plain(await env.client.clientStream(from([{ text: 'a' }, { text: 'b' }, { text: 'c' }]), opts)));
    }),
  'client stream failing on its second message': (env) =>
    observe(async (opts) => {
      await env.client.clientStream(from([{ text: 'a' }, { failCode: Code.NotFound, failMessage: 'gone' }]), opts);
    }),
  'server stream': (env) =>
    observe(async (opts, replies) => {
      for await (const m of env.client.serverStream({ text: 's', repeat: 3 }, opts)) replies.push(plain(m));
    }),
  'server stream failing after two messages': (env) =>
    observe(async (opts, replies) => {
      const req = { text: 's', repeat: 2, failCode: Code.ResourceExhausted, failMessage: 'enough' };
      for await (const m of env.client.serverStream(req, opts)) replies.push(plain(m));
    }),
  'server stream with no messages': (env) =>
    observe(async (opts, replies) => {
      for await (const m of env.client.serverStream({ repeat: 0 }, opts)) replies.push(plain(m));
    }),
  'bidi stream': (env) =>
    observe(async (opts, replies) => {
      for await (const m of env.client.bidi(from([{ text: 'x' }, { text: 'y' }]), opts)) replies.push(plain(m));
    }),
  'bidi stream failing on its second message': (env) =>
    observe(async (opts, replies) => {
      const reqs = from([{ text: 'x' }, { failCode: Code.Aborted, failMessage: 'conflict' }]);
      for await (const m of env.client.bidi(reqs, opts)) replies.push(plain(m));
    }),
  'unary with a signal aborted before the call': async (env) => {
    const before = env.seen.calls;
    const client = await observe(async (opts) => {
      await env.client.unary({ text: 'late' }, { ...opts, signal: AbortSignal.abort() });
    });
    return { client, reachedServer: env.seen.calls - before };
  },
  'bidi stream with a signal aborted before the call': async (env) => {
    const before = env.seen.calls;
    const client = await observe(async (opts, replies) => {
      const stream = env.client.bidi(from([{ text: 'late' }]), { ...opts, signal: AbortSignal.abort() });
      for await (const m of stream) replies.push(plain(m));
    });
    return { client, reachedServer: env.seen.calls - before };
  },
  'unary failing with Canceled thrown by the implementation': (env) =>
    observe(async (opts) => {
      await env.client.unary({ failCode: Code.Canceled, failMessage: 'server gave up' }, opts);
    }),
  'unary with repeated ASCII and binary headers': (env) =>
    observe(async (opts, replies) => {
      const h = new Headers(opts.headers);
      h.append('x-multi', 'a');
      h.append('x-multi', 'b');
      h.append('x-two-bin', encodeBinaryHeader(new Uint8Array([1])));
      h.append('x-two-bin', encodeBinaryHeader(new Uint8Array([2, 3])));
      const raw = { ...opts, headers: h };
      replies.push(plain(await env.client.unary({ text: 'multi' }, raw)));
    }),
  'client stream whose request iterable fails': (env) =>
    observe(async (opts) => {
      const failing = async function* () {
        yield { text: 'a' };
        throw new Error('the producer broke');
      };
      await env.client.clientStream(failing(), opts);
    }),
  'unary past its deadline': async (env) => {
    env.seen.rearm();
    const client = await observe(async (opts) => {
      await env.client.unary({ hang: true }, { ...opts, timeoutMs: 150 });
    });
    // Which of the two deadline timers wins on the server is a race, in Connect's own server too.
    return {
      code: (client as { error?: { code: string } }).error?.code,
      serverAborted: (await env.seen.aborted) !== '',
    };
  },
  'unary aborted by the caller': async (env) => {
    env.seen.rearm();
    const controller = new AbortController();
    void env.seen.hanging.then(() => controller.abort());
    const client = await observe(async (opts) => {
      await env.client.unary({ hang: true }, { ...opts, signal: controller.signal });
    });
    return { client, server: await env.seen.aborted };
  },
  'server stream aborted by the caller after a message': async (env) => {
    env.seen.rearm();
    const controller = new AbortController();
    const client = await observe(async (opts, replies) => {
      const stream = env.client.serverStream(
        { text: 's', repeat: 1, hang: true },
        { ...opts, signal: controller.signal },
      );
      for await (const m of stream) {
        replies.push(plain(m));
        await env.seen.hanging;
        controller.abort();
      }
    });
    return { client, server: await env.seen.aborted };
  },
  'server stream left early by the caller': async (env) => {
    env.seen.rearm();
    const client = await observe(async (opts, replies) => {
      for await (const m of env.client.serverStream({ text: 's', repeat: 1, hang: true }, opts)) {
        replies.push(plain(m));
        break;
      }
    });
    return { client, server: await env.seen.aborted };
  },
  'bidi past its deadline while the server waits': async (env) => {
    env.seen.rearm();
    const client = await observe(async (opts, replies) => {
      // The request that makes the server wait goes once the first reply is
      // in: which replies arrive before the deadline must not depend on
      // how busy the machine is, only what happens after it.
      let replied!: () => void;
      const firstReply = new Promise<void>((resolve) => {
        replied = resolve;
      });
      const reqs = (async function* () {
        yield { text: 'x' };
        await firstReply;
        yield { hang: true };
      })();
      for await (const m of env.client.bidi(reqs, { ...opts, timeoutMs: 1000 })) {
        replies.push(plain(m));
        replied();
      }
    });
    const error = (client as { error?: { code: string } }).error;
    return { replies: client.replies, code: error?.code, serverAborted: (await env.seen.aborted) !== '' };
  },
};

describe('Connect-ES through tunnels, against Connect over plain HTTP/2', () => {
  let reference: Env;
  const envs = new Map<string, Env>();

  before(async () => {
    reference = await connectNodeEnv();
    for (const [name, factory] of Object.entries(ENVIRONMENTS)) envs.set(name, await factory());
  });

  after(async () => {
    await reference?.close();
    for (const env of envs.values()) await env.close();
    await stopAllServers();
  });

  for (const [scenario, run] of Object.entries(SCENARIOS)) {
    it(scenario, async () => {
      const expected = await run(reference);
      for (const [name, env] of envs) {
        assert.deepEqual(await run(env), expected, `${scenario}: ${name} differs from connect-node`);
      }
    });
  }

  it('an implementation error that is not a ConnectError reaches the caller as INTERNAL "internal error" only, and is reported', async () => {
    for (const [name, env] of envs) {
      const before = env.seen.internal.length;
      await assert.rejects(env.client.unary({ failPlain: true }), (e: unknown) => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.code, Code.Internal, name);
        assert.equal(e.rawMessage, 'internal error', name);
        return true;
      });
      if (name !== 'forward tunnel' && name !== 'reverse tunnel pool' && name !== 'grpc-js server (addConnectService)')
        continue;
      assert.equal(env.seen.internal.length, before + 1, name);
      assert.match(String(env.seen.internal.at(-1)), /secret internal text/);
    }
  });
});
