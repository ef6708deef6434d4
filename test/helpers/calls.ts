import {
  type Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  Metadata,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';

/** Outcome of a unary or client-streaming call. */
export interface UnaryResult {
  error: ServiceError | null;
  value: Buffer | undefined;
  headers: Metadata | undefined;
  status: StatusObject | undefined;
}

type AnyClient = Client & Record<string, any>;

/** Makes a unary call and waits for everything it reports. */
export function unary(
  client: AnyClient,
  request: Buffer,
  metadata = new Metadata(),
  options = {},
): Promise<UnaryResult> {
  return new Promise((resolve) => {
    const result: UnaryResult = { error: null, value: undefined, headers: undefined, status: undefined };
    let pending = 2;
    const done = () => --pending === 0 && resolve(result);
    const call = client.unary(request, metadata, options, (error: ServiceError | null, value?: Buffer) => {
      result.error = error;
      result.value = value;
      done();
    });
    call.on('metadata', (md: Metadata) => {
      result.headers = md;
    });
    call.on('status', (s: StatusObject) => {
      result.status = s;
      done();
    });
  });
}

/** Makes a client-streaming call with the given messages. */
export function clientStream(
  client: AnyClient,
  messages: Buffer[],
  metadata = new Metadata(),
  options = {},
): Promise<UnaryResult> {
  return new Promise((resolve) => {
    const result: UnaryResult = { error: null, value: undefined, headers: undefined, status: undefined };
    let pending = 2;
    const done = () => --pending === 0 && resolve(result);
    const call = client.clientStream(metadata, options, (error: ServiceError | null, value?: Buffer) => {
      result.error = error;
      result.value = value;
      done();
    });
    call.on('metadata', (md: Metadata) => {
      result.headers = md;
    });
    call.on('status', (s: StatusObject) => {
      result.status = s;
      done();
    });
    for (const m of messages) call.write(m);
    call.end();
  });
}

/** Outcome of a call with a response stream. */
export interface StreamResult {
  messages: Buffer[];
  error: ServiceError | null;
  headers: Metadata | undefined;
  status: StatusObject | undefined;
}

/** Reads a response stream to its end. */
export function collect(
  call: ClientReadableStream<Buffer> | ClientDuplexStream<Buffer, Buffer>,
): Promise<StreamResult> {
  return new Promise((resolve) => {
    const result: StreamResult = { messages: [], error: null, headers: undefined, status: undefined };
    let ended = false;
    let gotStatus = false;
    const done = () => {
      if (gotStatus && (ended || result.error)) resolve(result);
    };
    call.on('metadata', (md: Metadata) => {
      result.headers = md;
    });
    call.on('data', (m: Buffer) => result.messages.push(m));
    call.on('error', (e: ServiceError) => {
      result.error = e;
      done();
    });
    call.on('end', () => {
      ended = true;
      done();
    });
    call.on('status', (s: StatusObject) => {
      result.status = s;
      gotStatus = true;
      done();
    });
  });
}

/** Server-streaming call asking for `count` messages of `size` bytes. */
export function serverStream(client: AnyClient, count: number, size: number, metadata = new Metadata(), options = {}) {
  return client.serverStream(
    Buffer.from(JSON.stringify({ count, size })),
    metadata,
    options,
  ) as ClientReadableStream<Buffer>;
}
