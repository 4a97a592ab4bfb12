// The custom search attributes a training run's workflow carries (workflows/messages.ts): checking that a
// namespace has them, and adding the missing ones where we may (the local dev server). A start or an
// upsert with an unknown attribute fails on the server, so commands check first and say what to add.
import type { Connection } from '@temporalio/client';
// A CommonJS module: its namespace object is the default export under Node's ESM loader.
import proto from '@temporalio/proto';
import { searchAttributes } from '../workflows/messages.js';

const { IndexedValueType } = proto.temporal.api.enums.v1;
const INDEXED: Record<string, proto.temporal.api.enums.v1.IndexedValueType> = {
  KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
  DOUBLE: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
};

/** name → CLI type name, e.g. DroStep → Int. */
export const RUN_SEARCH_ATTRIBUTES: ReadonlyArray<{ name: string; type: string }> = Object.values(searchAttributes).map((k) => ({
  name: k.name,
  type: k.type.charAt(0) + k.type.slice(1).toLowerCase(),
}));

/** The run attributes the namespace lacks. */
export async function missingSearchAttributes(connection: Pick<Connection, 'operatorService'>, namespace: string): Promise<string[]> {
  const listed = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set([...Object.keys(listed.customAttributes ?? {}), ...Object.keys(listed.systemAttributes ?? {})]);
  return RUN_SEARCH_ATTRIBUTES.map((a) => a.name).filter((n) => !known.has(n));
}

/** Adds the missing run attributes; returns the names added. */
export async function registerSearchAttributes(connection: Pick<Connection, 'operatorService'>, namespace: string): Promise<string[]> {
  const missing = await missingSearchAttributes(connection, namespace);
  if (missing.length === 0) return [];
  const byName = new Map(Object.values(searchAttributes).map((k) => [k.name, INDEXED[k.type]!]));
  await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map((n) => [n, byName.get(n)!])) });
  return missing;
}

/** The commands that add `names` on a cluster, for an error message or the README. */
export function searchAttributeCommands(names: readonly string[], namespace: string): string {
  return RUN_SEARCH_ATTRIBUTES.filter((a) => names.includes(a.name))
    .map((a) => `temporal operator search-attribute create --namespace ${namespace} --name ${a.name} --type ${a.type}`)
    .join('; ');
}
