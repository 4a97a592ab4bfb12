// What every activity shares: the run's store (opened once per URI and process), heartbeating while an
// engine call runs in the engine thread, and fixed-size chunks for the batch plan.
import { Context } from '@temporalio/activity';
import type { BlobStore } from '../storage/blob-store.js';
import { openBlobStore } from '../storage/open.js';
import { failure } from './errors.js';

export type StoreOpener = (uri: string) => Promise<BlobStore>;

export function storeCache(open: StoreOpener = (uri) => openBlobStore(uri)): StoreOpener {
  const stores = new Map<string, Promise<BlobStore>>();
  return (uri) => {
    let store = stores.get(uri);
    if (!store) {
      store = open(uri).catch((err: unknown) => {
        stores.delete(uri);
        throw failure('InvalidConfig', `checkpoint.store: ${(err as Error).message}`, err);
      });
      stores.set(uri, store);
    }
    return store;
  };
}

/** Whether this code runs inside a Temporal activity (unit tests call the functions directly). */
function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

export interface Progress {
  /** Set what the next heartbeat reports (tokens generated, sequences scored ...). */
  report: (details: Record<string, number | string>) => void;
  signal: AbortSignal | undefined;
}

/**
 * Runs `fn` while heartbeating every second from the main event loop (the engine computes in its own
 * thread, so the loop is free), with the activity's cancellation signal for the engine calls.
 */
export async function withHeartbeat<T>(fn: (progress: Progress) => Promise<T>): Promise<T> {
  const ctx = activityContext();
  let details: Record<string, number | string> = {};
  const beat = (): void => ctx?.heartbeat(details);
  beat();
  const timer = ctx ? setInterval(beat, 1000) : undefined;
  try {
    return await fn({ report: (d) => void (details = d), signal: ctx?.cancellationSignal });
  } finally {
    if (timer) clearInterval(timer);
  }
}

/** Items in consecutive chunks of `size`: the batch plan's grouping, fixed by the config. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export const seconds = (since: number): number => (performance.now() - since) / 1000;
