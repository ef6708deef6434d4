// The Connect-ES implementation of connecttest.EchoService the tests serve
// everywhere (a plain connect-node server, a grpc-js server, forward and
// reverse tunnels), and what its handlers observed.
import { Code, ConnectError, encodeBinaryHeader, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { type EchoRequest, EchoService, ErrorDetailSchema } from './gen/connecttest/echo_pb.js';

export const TRAILER_BYTES = new Uint8Array([0, 1, 2, 250, 255]);

/**
 * What the handlers saw: `hanging` resolves when a handler starts waiting
 * for its call to end (a `hang` request), with the time it had left then
 * (`timeoutMs()`, undefined without a deadline), `aborted` with the Connect code of
 * the reason its signal then gave; `rearm()` renews both for the next call.
 * `internal` holds the errors that were not ConnectErrors, as reported.
 */
export function newSeen() {
  const seen = {
    internal: [] as unknown[],
    /** How many calls reached a handler. */
    calls: 0,
    hanging: Promise.resolve(undefined as number | undefined),
    aborted: Promise.resolve(''),
    started: (_remainingMs: number | undefined) => {},
    onAborted: (_code: string) => {},
    rearm() {
      seen.hanging = new Promise<number | undefined>((resolve) => {
        seen.started = resolve;
      });
      seen.aborted = new Promise<string>((resolve) => {
        seen.onAborted = resolve;
      });
    },
  };
  seen.rearm();
  return seen;
}

/** Echoes x- request headers as response headers and adds fixed trailers (one ASCII, one binary). */
function prepare(ctx: HandlerContext, seen: ReturnType<typeof newSeen>): void {
  seen.calls++;
  ctx.requestHeader.forEach((value, key) => {
    if (key.startsWith('x-')) ctx.responseHeader.set(key, value);
  });
  ctx.responseTrailer.set('x-trailer', 'done');
  ctx.responseTrailer.set('x-trailer-bin', encodeBinaryHeader(TRAILER_BYTES));
}

async function act(req: EchoRequest, ctx: HandlerContext, seen: ReturnType<typeof newSeen>): Promise<void> {
  if (req.hang) {
    const reason = await new Promise<unknown>((resolve) => {
      seen.started(ctx.timeoutMs());
      // A call already over when its handler starts (its deadline passed on
      // the way, under load) has an aborted signal, which fires no event.
      if (ctx.signal.aborted) resolve(ctx.signal.reason);
      else ctx.signal.addEventListener('abort', () => resolve(ctx.signal.reason), { once: true });
    });
    seen.onAborted(Code[ConnectError.from(reason).code] ?? 'none');
    throw reason;
  }
  if (req.failPlain) throw new Error('secret internal text');
  if (req.failCode !== 0) {
    throw new ConnectError(req.failMessage, req.failCode, { 'x-error': 'yes' }, [
      { desc: ErrorDetailSchema, value: { reason: 'because', attempt: 3 } },
    ]);
  }
}

export function echoImpl(seen: ReturnType<typeof newSeen>): ServiceImpl<typeof EchoService> {
  return {
    async unary(req, ctx) {
      prepare(ctx, seen);
      await act(req, ctx, seen);
      return { text: `${req.text}|timeout:${ctx.timeoutMs() !== undefined}`, index: 0 };
    },
    async clientStream(reqs, ctx) {
      prepare(ctx, seen);
      const texts: string[] = [];
      for await (const req of reqs) {
        await act(req, ctx, seen);
        texts.push(req.text);
      }
      return { text: texts.join(','), index: texts.length };
    },
    async *serverStream(req, ctx) {
      prepare(ctx, seen);
      for (let index = 0; index < req.repeat; index++) yield { text: req.text, index };
      await act(req, ctx, seen);
    },
    async *bidi(reqs, ctx) {
      prepare(ctx, seen);
      let index = 0;
      for await (const req of reqs) {
        await act(req, ctx, seen);
        yield { text: req.text, index: index++ };
      }
    },
  };
}

export { EchoService };
