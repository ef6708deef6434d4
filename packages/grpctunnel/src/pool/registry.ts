import type { TunnelChannelImpl } from '../grpc/client/tunnel-channel.js';
import type { PooledTunnel } from './reverse-tunnel.js';

/** Selects the tunnels of a pool: every tunnel, or those of one affinity key. */
export type PoolSelector<K = unknown> = { readonly all: true } | { readonly all?: false; readonly key: K };

/** The tunnels of one pool, a round-robin cursor, and whoever waits for the pool to change. */
class Group<K> {
  tunnels: PooledTunnel<K>[] = [];
  next = 0;
  readonly watchers = new Set<() => void>();

  get unused(): boolean {
    return this.tunnels.length === 0 && this.watchers.size === 0;
  }

  pick(): PooledTunnel<K> | undefined {
    const n = this.tunnels.length;
    if (n === 0) return undefined;
    if (this.next >= n) this.next = 0;
    const tunnel = this.tunnels[this.next] as PooledTunnel<K>;
    this.next++;
    return tunnel;
  }

  notify(): void {
    for (const watcher of [...this.watchers]) watcher();
  }
}

/**
 * The reverse tunnels a handler holds, grouped by affinity key. Groups exist
 * only while they have tunnels or watchers, so the bookkeeping returns to
 * empty when every tunnel has closed.
 */
export class ReverseTunnelRegistry<K = unknown> {
  private readonly all = new Group<K>();
  private readonly byKey = new Map<K, Group<K>>();

  /** The open tunnels of a pool (every tunnel by default), in the order they opened. */
  snapshot(selector: PoolSelector<K> = { all: true }): PooledTunnel<K>[] {
    return [...(this.group(selector)?.tunnels ?? [])];
  }

  /** Number of open tunnels. */
  get size(): number {
    return this.all.tunnels.length;
  }

  /** Number of keys that have tunnels or waiting callers. */
  get keyCount(): number {
    return this.byKey.size;
  }

  add(tunnel: PooledTunnel<K>): void {
    const group = this.byKey.get(tunnel.key) ?? new Group<K>();
    this.byKey.set(tunnel.key, group);
    group.tunnels.push(tunnel);
    this.all.tunnels.push(tunnel);
    group.notify();
    this.all.notify();
  }

  /** Takes a tunnel out of its pools at once; false if it was not in them. */
  remove(tunnel: PooledTunnel<K>): boolean {
    if (!removeFrom(this.all, tunnel)) return false;
    const group = this.byKey.get(tunnel.key);
    if (group) {
      removeFrom(group, tunnel);
      group.notify();
      if (group.unused) this.byKey.delete(tunnel.key);
    }
    this.all.notify();
    return true;
  }

  /**
   * Retires a tunnel whose far side is draining: it leaves its pools at
   * once (no new call is routed to it), its calls in flight finish, then the
   * tunnel ends (which is what the draining side waits for).
   */
  retire(tunnel: PooledTunnel<K>): void {
    this.remove(tunnel);
    tunnel.channel.closeWhenIdle();
  }

  /** {@link retire} for the pooled tunnel that `channel` belongs to, if any. */
  retireChannel(channel: TunnelChannelImpl): void {
    const tunnel = this.all.tunnels.find((t) => t.channel === channel);
    if (tunnel) this.retire(tunnel);
    else channel.closeWhenIdle();
  }

  /** The next tunnel of a pool, round-robin; undefined when the pool is empty. */
  pick(selector: PoolSelector<K>): PooledTunnel<K> | undefined {
    return this.group(selector)?.pick();
  }

  /** The affinity keys that have open tunnels, in the order their first tunnel opened. */
  keys(): K[] {
    const keys: K[] = [];
    for (const [key, group] of this.byKey) if (group.tunnels.length > 0) keys.push(key);
    return keys;
  }

  /** Number of tunnels in a pool. */
  count(selector: PoolSelector<K>): number {
    return this.group(selector)?.tunnels.length ?? 0;
  }

  /** Calls `watcher` whenever the pool gains or loses a tunnel, until the returned function is called. */
  watch(selector: PoolSelector<K>, watcher: () => void): () => void {
    let group: Group<K>;
    if (selector.all) group = this.all;
    else {
      group = this.byKey.get(selector.key) ?? new Group<K>();
      this.byKey.set(selector.key, group);
    }
    group.watchers.add(watcher);
    return () => {
      group.watchers.delete(watcher);
      if (!selector.all && group.unused && this.byKey.get(selector.key) === group) this.byKey.delete(selector.key);
    };
  }

  private group(selector: PoolSelector<K>): Group<K> | undefined {
    return selector.all ? this.all : this.byKey.get(selector.key);
  }
}

function removeFrom<K>(group: Group<K>, tunnel: PooledTunnel<K>): boolean {
  const at = group.tunnels.indexOf(tunnel);
  if (at < 0) return false;
  group.tunnels.splice(at, 1);
  if (group.next > at) group.next--;
  return true;
}
