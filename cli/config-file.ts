// Run config files as people write them, YAML or JSON, and `--set path=value` over them from the command
// line: a syntax error names file:line:column, a key given twice is an error (YAML and JSON parsers would
// otherwise keep the last one silently), and a --set of a field that does not exist is refused at once.
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { Option } from 'commander';
import { parseDocument, type YAMLError } from 'yaml';
import { runConfigFieldDocs, unknownFieldPath } from '../dro/config.js';
import { decodeUtf8File, FileFormatError, parseJsonText } from '../storage/local-files.js';
import { UsageError } from './options.js';

/** One `--set path=value`: the value as YAML read it. */
export interface ConfigSetting {
  path: string;
  value: unknown;
}

/** The contents of a run config file: YAML for .yaml/.yml, JSON for .json, otherwise JSON and then YAML. */
export async function readConfigFile(path: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseConfigText(decodeUtf8File(bytes, path), path);
}

/** `text`, the contents of `path`, as YAML or JSON by the file's extension (see readConfigFile); errors are FileFormatErrors. */
export function parseConfigText(text: string, path: string): unknown {
  const extension = extname(path).toLowerCase();
  if (extension === '.yaml' || extension === '.yml') return parseYaml(text, path);
  if (extension === '.json') return parseJson(text, path);
  try {
    return parseJson(text, path);
  } catch (jsonError) {
    // Text that opens like JSON was meant as JSON: its own error says more than YAML's would.
    if (/^\s*[{[]/.test(text)) throw jsonError;
    try {
      return parseYaml(text, path);
    } catch (yamlError) {
      throw new FileFormatError(`${path} is neither JSON nor YAML (name it .json, .yaml or .yml to say which); read as YAML: ${(yamlError as Error).message}`, { cause: yamlError });
    }
  }
}

function parseYaml(text: string, path: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const more = doc.errors.length - 1;
    throw new FileFormatError(`${yamlErrorText(doc.errors[0]!, path, text)}${more > 0 ? ` (and ${more} more YAML error${more === 1 ? '' : 's'})` : ''}`);
  }
  try {
    // An empty file, or one of comments only, is the all-defaults config.
    return (doc.toJS() as unknown) ?? {};
  } catch (err) {
    // toJS refuses aliases that would blow up (a "billion laughs" file), naming no place.
    throw new FileFormatError(`${path}: ${(err as Error).message}`, { cause: err });
  }
}

function parseJson(text: string, path: string): unknown {
  const value = parseJsonText(text, path);
  // JSON.parse keeps the last of two equal keys; JSON is YAML, and the YAML parser finds the pair.
  const duplicate = parseDocument(text, { uniqueKeys: true, prettyErrors: true }).errors.find((e) => e.code === 'DUPLICATE_KEY');
  if (duplicate) throw new FileFormatError(yamlErrorText(duplicate, path, text));
  return value;
}

/** The parser's error as one line: "run.yaml:4:3: a key given twice (each field once): `groupSize: 9`". */
function yamlErrorText(error: YAMLError, path: string, text: string): string {
  const at = error.linePos?.[0];
  const what = error.code === 'DUPLICATE_KEY' ? 'a key given twice (each field once)' : withoutPosition(error.message);
  const line = at ? text.split('\n')[at.line - 1]?.trim().slice(0, 80) : undefined;
  return `${path}${at ? `:${at.line}:${at.col}` : ''}: ${what}${line ? `: \`${line}\`` : ''}`;
}

/** The parser's message without its own " at line L, column C:" and the excerpt after it (said once, our way). */
const withoutPosition = (message: string): string => message.replace(/ at line \d+, column \d+:[\s\S]*$/, '');

/**
 * `path=value` as a ConfigSetting, or a UsageError naming `flag`: the path must name a run config field or
 * section, and the value is read as YAML (1e-5, 16, true, null, [q_proj, v_proj], 'text', {a: 1}).
 */
export function parseSetting(text: string, flag: string): ConfigSetting {
  const eq = text.indexOf('=');
  if (eq < 0) throw new UsageError(`${flag} takes path=value (e.g. ${flag} optimizer.learningRate=1e-5), got ${JSON.stringify(text)}`);
  const path = text.slice(0, eq).trim();
  const raw = text.slice(eq + 1);
  if (path === '') throw new UsageError(`${flag} ${text}: no field path before '=' (e.g. ${flag} rollout.groupSize=16)`);
  if (path.split('.').some((part) => part === '')) throw new UsageError(`${flag} ${text}: ${JSON.stringify(path)} has an empty part between dots`);
  const unknown = unknownFieldPath(path);
  if (unknown) throw new UsageError(`${flag} ${text}: ${unknown}; \`dro config fields\` lists every field`);
  if (raw.trim() === '') throw new UsageError(`${flag} ${text}: no value after '=' (write null for null, '' for an empty text)`);
  const doc = parseDocument(raw, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) throw new UsageError(`${flag} ${text}: the value is not valid YAML: ${withoutPosition(doc.errors[0]!.message)}`);
  return { path, value: doc.toJS() };
}

/** `--set <path=value>`, repeatable, collected in order (a later one wins over an earlier one for the same field). */
export const setOption = (): Option =>
  new Option('--set <path=value>', "set a config field over the file, e.g. --set optimizer.learningRate=1e-5 --set model.loraTargets='[q_proj, v_proj]' (the value is read as YAML); repeatable").argParser(
    (text: string, previous: ConfigSetting[] | undefined) => [...(previous ?? []), parseSetting(text, '--set')],
  );

/**
 * Writes each setting into `raw` (a config object as read from its file), making the sections it needs. A
 * key of a free-form field the file leaves out (model.init.hidden_size) changes that key of the field's
 * default, as it would change the file's own: an object given in a file replaces the default whole.
 */
export function applySettings(raw: Record<string, unknown>, settings: readonly ConfigSetting[]): void {
  if (settings.length === 0) return;
  const defaults = new Map(runConfigFieldDocs().map((doc) => [doc.path, doc.default]));
  for (const { path, value } of settings) {
    const parts = path.split('.');
    let at = raw;
    for (let i = 0; i < parts.length - 1; i++) {
      const part = parts[i]!;
      const next = Object.hasOwn(at, part) ? at[part] : undefined;
      // A section the file gave as something else is replaced: --set is the last word.
      if (next === null || typeof next !== 'object' || Array.isArray(next)) {
        const fieldDefault = defaults.get(parts.slice(0, i + 1).join('.'));
        at[part] = fieldDefault === undefined ? {} : (JSON.parse(fieldDefault) as unknown);
      }
      at = at[part] as Record<string, unknown>;
    }
    at[parts.at(-1)!] = value;
  }
}
