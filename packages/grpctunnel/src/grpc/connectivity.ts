import type { connectivityState } from '@grpc/grpc-js';
import { type LongTimer, setLongTimeout } from './long-timer.js';

/**
 * grpc-js's `watchConnectivityState` contract for channels whose state
 * changes are announced through `subscribe` (which returns an unsubscribe
 * function): `callback()` once the state differs from `currentState`, or
 * `callback(error)` when `deadline` passes first.
 */
export function watchConnectivity(
  getState: () => connectivityState,
  subscribe: (onChange: () => void) => () => void,
  currentState: connectivityState,
  deadline: Date | number,
  callback: (error?: Error) => void,
): void {
  if (getState() !== currentState) {
    process.nextTick(callback);
    return;
  }
  const ms = (deadline instanceof Date ? deadline.getTime() : deadline) - Date.now();
  let timer: LongTimer | undefined;
  const unsubscribe = subscribe(() => {
    if (getState() === currentState) return;
    unsubscribe();
    timer?.clear();
    callback();
  });
  // Any deadline, even past Node's 2^31-1 ms timer limit (an infinite one sets no timer).
  timer = setLongTimeout(() => {
    unsubscribe();
    callback(new Error('Deadline passed without connectivity state change'));
  }, ms);
}
