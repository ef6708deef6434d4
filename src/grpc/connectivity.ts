import type { connectivityState } from '@grpc/grpc-js';

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
  let timer: NodeJS.Timeout | undefined;
  const unsubscribe = subscribe(() => {
    if (getState() === currentState) return;
    unsubscribe();
    if (timer) clearTimeout(timer);
    callback();
  });
  if (Number.isFinite(ms)) {
    timer = setTimeout(
      () => {
        unsubscribe();
        callback(new Error('Deadline passed without connectivity state change'));
      },
      Math.max(0, ms),
    );
  }
}
