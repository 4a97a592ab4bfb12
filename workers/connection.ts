// Where workers and the CLI find Temporal: Temporal's environment configuration (TEMPORAL_ADDRESS,
// TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS files, TEMPORAL_PROFILE and its config file), falling back
// to the local services' env file (.data/services.env or $DRO_DATA_DIR/services.env) for whatever the
// environment leaves unset, so the same code runs against the dev server, a cluster or Temporal Cloud.
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { loadServicesEnv } from './services-env.js';

export interface TemporalTarget {
  connectionOptions: NativeConnectionOptions;
  namespace: string;
  /** host:port, for messages (never any credential). */
  address: string;
}

/** Loads the services env file (variables already set win) and then Temporal's own configuration. */
export function temporalTarget(): TemporalTarget {
  loadServicesEnv({ override: false });
  let config;
  try {
    config = loadClientConnectConfig();
  } catch (err) {
    throw new Error(`Temporal connection settings: ${(err as Error).message}`, { cause: err });
  }
  const address = config.connectionOptions.address ?? 'localhost:7233';
  return { connectionOptions: { ...config.connectionOptions, address }, namespace: config.namespace ?? 'default', address };
}

/** The Web UI page of a workflow: DRO_TEMPORAL_UI_URL (the local services set it), else the dev server's default. */
export function webUiLink(namespace: string, workflowId: string): string {
  const base = process.env.DRO_TEMPORAL_UI_URL ?? 'http://127.0.0.1:8233';
  return `${base.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
