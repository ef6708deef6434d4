// An ordinary grpc-js implementation of example.Greeter (generated with
// ts-proto into examples/gen); nothing in it knows about tunnels.
import type { GreeterServer } from './gen/example/greeter.js';

export const greeterImplementation: GreeterServer = {
  sayHello(call, callback) {
    callback(null, { message: `hello, ${call.request.name}` });
  },
  sayHellos(call) {
    for (let i = 1; i <= call.request.times; i++) call.write({ message: `hello #${i}, ${call.request.name}` });
    call.end();
  },
};
