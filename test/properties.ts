// Properties over every parser that takes outside input (the safetensors header, model config.json, the
// run config, JSON config files as bytes, the JSONL dataset reader, blob keys, run ids): arbitrary input gives a result or the
// parser's own typed error, never another exception, a hang or a value that breaks the parser's promise.
// test/properties.test.ts runs them in CI; `npm run fuzz -- --runs <n>` runs them longer.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseRunConfig, RunConfigError } from '../dro/config.js';
import { BadRecord, readJsonlRecords } from '../datasets/jsonl.js';
import { DatasetError } from '../datasets/task.js';
import { ModelConfigError, parseModelConfig } from '../engine/model/config.js';
import { decodeSafetensors, encodeSafetensors, SafetensorsError } from '../engine/weights/safetensors.js';
import { InvalidKeyError, MAX_KEY_LENGTH, utf8Length, validateKey } from '../storage/blob-store.js';
import { CheckpointError, checkpointPrefix, validateRunId } from '../storage/checkpoints.js';
import { decodeUtf8File, FileFormatError, parseJsonText } from '../storage/local-files.js';

/** How one input ended: accepted, or refused with the expected error type. */
export type Outcome = 'accepted' | 'refused';

export interface ParserProperty {
  name: string;
  /** Runs once per generated input; throws (failing the property) on anything but a result or the typed error. */
  property: (tally: (o: Outcome) => void) => fc.IAsyncProperty<[unknown]> | fc.IProperty<[unknown]>;
}

/** Calls `parse`; the typed error counts as a refusal, any other error fails the property. */
function attempt<T>(parse: () => T, errorType: new (...a: never[]) => Error, tally: (o: Outcome) => void): { ok: true; value: T } | { ok: false } {
  try {
    const value = parse();
    tally('accepted');
    return { ok: true, value };
  } catch (err) {
    if (err instanceof errorType) {
      if (typeof err.message !== 'string' || err.message.length === 0) throw new Error(`${errorType.name} without a message`, { cause: err });
      tally('refused');
      return { ok: false };
    }
    throw err;
  }
}

const MODEL_FIELDS = ['model_type', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'rms_norm_eps', 'rope_theta', 'tie_word_embeddings', 'max_position_embeddings', 'attention_bias', 'hidden_act', 'rope_scaling'];
const value = fc.oneof(fc.integer({ min: -4, max: 4096 }), fc.double(), fc.constantFrom(Number.POSITIVE_INFINITY, -0, 2 ** 53, 1e6), fc.boolean(), fc.string(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }));

const validModelConfig = fc.record({
  vocab_size: fc.integer({ min: 1, max: 300 }),
  hidden_size: fc.constantFrom(8, 16, 64),
  intermediate_size: fc.integer({ min: 1, max: 200 }),
  num_hidden_layers: fc.integer({ min: 1, max: 4 }),
  num_attention_heads: fc.constantFrom(1, 2, 4),
});

/** A little-endian u64 length, then a header that is sometimes JSON, then data bytes. */
const safetensorsBytes = fc.oneof(
  // Real files, sometimes with one byte changed or cut short.
  fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 16 }), fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([data, at, byte, cut]) => {
    const n = data.length - (data.length % 4);
    const file = encodeSafetensors({ w: { dtype: 'F32', shape: [n / 4], data: data.subarray(0, n) } });
    if (cut) return file.subarray(0, Math.min(at, file.length));
    const copy = Uint8Array.from(file);
    if (at < copy.length) copy[at] = byte;
    return copy;
  }),
  fc.uint8Array({ maxLength: 256 }),
  fc.tuple(fc.oneof(fc.json(), fc.jsonValue().map((v) => JSON.stringify({ t: v })), fc.constant('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}')), fc.uint8Array({ maxLength: 64 }), fc.integer({ min: -8, max: 8 })).map(([header, data, skew]) => {
    const h = Buffer.from(header);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Math.max(0, h.length + skew)));
    return new Uint8Array(Buffer.concat([len, h, data]));
  }),
);

export const PROPERTIES: ParserProperty[] = [
  {
    name: 'safetensors header',
    property: (tally) =>
      fc.property(safetensorsBytes, (bytes) => {
        const file = attempt(() => decodeSafetensors(bytes as Uint8Array, 'probe'), SafetensorsError, tally);
        // Every tensor it returns fits the bytes it was given.
        for (const t of file.ok ? file.value.tensors.values() : []) if (t.data.byteLength > (bytes as Uint8Array).byteLength) throw new Error('a tensor larger than the file');
      }),
  },
  {
    name: 'model config.json',
    property: (tally) =>
      fc.property(fc.oneof(validModelConfig.chain((ok) => fc.record({ field: fc.constantFrom(...MODEL_FIELDS), v: value, keep: fc.boolean() }).map(({ field, v, keep }) => (keep ? ok : { ...ok, [field]: v }))), fc.dictionary(fc.constantFrom(...MODEL_FIELDS), value), fc.anything()), (json) => {
        const parsed = attempt(() => parseModelConfig(json, 'probe'), ModelConfigError, tally);
        if (parsed.ok) {
          const config = parsed.value;
          for (const k of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim'] as const) {
            if (!Number.isSafeInteger(config[k]) || config[k] <= 0) throw new Error(`accepted ${k} = ${config[k]}`);
          }
          if (!(config.rms_norm_eps > 0) || !Number.isFinite(config.rms_norm_eps)) throw new Error(`accepted rms_norm_eps = ${config.rms_norm_eps}`);
        }
      }),
  },
  {
    name: 'run config',
    property: (tally) =>
      fc.property(
        fc.oneof(
          fc.dictionary(fc.constantFrom('seed', 'model', 'data', 'rollout', 'dro', 'optimizer', 'schedule', 'checkpoint', 'evaluation', 'filtering', 'sft', 'orchestration', 'colour'), fc.oneof(value, fc.dictionary(fc.string({ maxLength: 12 }), value, { maxKeys: 4 }))),
          fc.anything(),
        ),
        (json) => {
          try {
            const config = parseRunConfig(json);
            tally('accepted');
            if (config.schedule.totalSteps < 1 || config.checkpoint.every < 1) throw new Error('accepted an empty schedule');
          } catch (err) {
            if (!(err instanceof RunConfigError)) throw err;
            if (err.problems.length === 0 || err.problems.length > 21 || err.message.length > 20_000) throw new Error(`an unbounded error: ${err.problems.length} problems, ${err.message.length} characters`, { cause: err });
            tally('refused');
          }
        },
      ),
  },
  {
    name: 'JSON config files',
    property: (tally) =>
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 60 }),
          // JSON as editors save it: sometimes a byte-order mark, sometimes a byte changed.
          fc.tuple(fc.json(), fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([json, bom, at, byte, corrupt]) => {
            const bytes = Buffer.concat([Buffer.from(bom ? [0xef, 0xbb, 0xbf] : []), Buffer.from(json)]);
            if (corrupt && bytes.length > 0) bytes[at % bytes.length] = byte;
            return new Uint8Array(bytes);
          }),
        ),
        (bytes) => {
          const parsed = attempt(() => parseJsonText(decodeUtf8File(bytes, 'c.json'), 'c.json'), FileFormatError, tally);
          let reference: { ok: boolean; value?: unknown };
          try {
            const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
            reference = { ok: true, value: JSON.parse(text) };
          } catch {
            reference = { ok: false };
          }
          if (parsed.ok !== reference.ok) throw new Error(`${parsed.ok ? 'accepted' : 'refused'} what a strict UTF-8 JSON reader ${reference.ok ? 'accepts' : 'refuses'}`);
          if (parsed.ok && JSON.stringify(parsed.value) !== JSON.stringify(reference.value)) throw new Error('read a different value');
        },
      ),
  },
  {
    name: 'JSONL dataset reader',
    property: (tally) =>
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.array(fc.oneof(fc.json(), fc.string()), { maxLength: 5 }).map((lines) => new Uint8Array(Buffer.from(lines.join('\n'))))), async (bytes) => {
        const dir = mkdtempSync(join(tmpdir(), 'dro-prop-'));
        const file = join(dir, 'data.jsonl');
        writeFileSync(file, bytes);
        try {
          const lines: number[] = [];
          const skipped = await readJsonlRecords(file, {}, (record, line) => {
            if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new Error('visited a non-object');
            if (record.bad === true) throw new BadRecord('bad');
            lines.push(line);
          });
          for (const s of skipped) if (!((s.line ?? 0) >= 1) || s.file !== file || !s.message) throw new Error('a skip without file, line and message');
          tally(skipped.length === 0 ? 'accepted' : 'refused');
          // Strict mode refuses exactly when something was skipped.
          const strict = await readJsonlRecords(file, { strict: true }, () => {}).then(
            () => 'ok',
            (err: unknown) => {
              if (!(err instanceof DatasetError)) throw err;
              return 'refused';
            },
          );
          const notObjects = skipped.filter((s) => s.message !== 'bad').length;
          if ((strict === 'refused') !== notObjects > 0) throw new Error('strict and lenient disagree');
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
  },
  {
    name: 'blob keys',
    property: (tally) =>
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.array(fc.oneof(fc.constantFrom('..', '.', '', '.partial', '.dro-partial.1', '..x', '€'.repeat(90)), fc.string({ unit: 'grapheme', maxLength: 8 })), { maxLength: 6 }).map((s) => s.join('/'))), (key) => {
        if (!attempt(() => validateKey(key), InvalidKeyError, tally).ok) return;
        const segments = (key).split('/');
        if (segments.some((s) => s === '' || s === '.' || s === '..') || utf8Length(key) > MAX_KEY_LENGTH || (key).startsWith('/')) throw new Error(`accepted key ${JSON.stringify(key)}`);
      }),
  },
  {
    name: 'run ids',
    property: (tally) =>
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/)), (runId) => {
        if (!attempt(() => validateRunId(runId), CheckpointError, tally).ok) return;
        // An accepted run id always makes valid store keys.
        validateKey(`${checkpointPrefix(runId, 0)}manifest.json`);
      }),
  },
];

/** Runs every property `runs` times; returns per property how many inputs were accepted and refused. */
export async function checkProperties(runs: number, seed?: number): Promise<{ name: string; accepted: number; refused: number }[]> {
  const out: { name: string; accepted: number; refused: number }[] = [];
  for (const p of PROPERTIES) {
    const counts = { accepted: 0, refused: 0 };
    const tally = (o: Outcome): void => void counts[o]++;
    // Counting inside a property also counts shrinking; a failure reports its (shrunk) input instead.
    await fc.assert(p.property(tally) as fc.IAsyncProperty<[unknown]>, { numRuns: runs, seed });
    out.push({ name: p.name, ...counts });
  }
  return out;
}
