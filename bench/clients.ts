import { type Client, makeGenericClientConstructor } from '@grpc/grpc-js';
import { BenchService } from './service.js';

/** A generic client of the bench service (methods unary, stream, pingPong, upload). */
export type AnyClient = Client & Record<string, any>;

export const BenchClient = makeGenericClientConstructor(BenchService, 'Bench');
