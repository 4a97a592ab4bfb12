// The tokenizer rebuilt from GGUF metadata: the SmolLM2-style fixture, written into GGUF metadata the
// way llama.cpp's converter writes it (tokens by id, "a b" merges, token types, pre-tokenizer "smollm"),
// must tokenize, decode and render chats exactly as the Python library does on the original
// tokenizer.json (expected.json); what it cannot rebuild is refused by name.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeGgufHeader, encodeGguf, type TypedValue } from '../weights/gguf.js';
import { tokenizerFilesFromGguf } from './gguf-tokenizer.js';
import { HfTokenizer } from './hf-tokenizer.js';
import type { ChatMessage } from './tokenizer.js';

const fixtures = join(import.meta.dirname, 'fixtures');
const read = (file: string): Record<string, unknown> => JSON.parse(readFileSync(join(fixtures, file), 'utf8')) as Record<string, unknown>;
const tokenizerJson = read('smollm2/tokenizer.json') as { model: { vocab: Record<string, number>; merges: [string, string][] }; added_tokens: { id: number }[] };
const configJson = read('smollm2/tokenizer_config.json') as { chat_template: string };
const expected = (read('expected.json').fixtures as Record<string, unknown>).smollm2 as {
  cases: { text: string; ids: number[]; decoded: string; decodedSkippingSpecial: string }[];
  chats: { messages: ChatMessage[]; withGenerationPrompt: string }[];
};

function ggufMetadata(overrides: [string, TypedValue][] = []): [string, TypedValue][] {
  const byId = Object.entries(tokenizerJson.model.vocab).sort((a, b) => a[1] - b[1]).map(([token]) => token);
  const special = new Set(tokenizerJson.added_tokens.map((t) => t.id));
  const base: [string, TypedValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['llama.context_length', { type: 'u32', value: 8192 }],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'smollm' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', items: byId }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', items: byId.map((_, id) => (special.has(id) ? 3 : 1)) }],
    ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', items: tokenizerJson.model.merges.map((m) => m.join(' ')) }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 1 }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 2 }],
    ['tokenizer.ggml.padding_token_id', { type: 'u32', value: 2 }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: 0 }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: false }],
    ['tokenizer.chat_template', { type: 'string', value: configJson.chat_template }],
  ];
  const keys = new Set(overrides.map(([k]) => k));
  return [...base.filter(([k]) => !keys.has(k)), ...overrides];
}

const rebuild = (meta: [string, TypedValue][]): ReturnType<typeof tokenizerFilesFromGguf> => tokenizerFilesFromGguf(decodeGgufHeader(encodeGguf(meta, []), 'm.gguf'), 'm.gguf');

describe('tokenizer from GGUF metadata', () => {
  const files = rebuild(ggufMetadata());
  const tok = new HfTokenizer({ tokenizer: files.tokenizer, config: files.config });

  it('tokenizes and decodes every fixture string as the Python library does on the original', () => {
    for (const c of expected.cases) {
      expect(tok.encode(c.text), c.text).toEqual(c.ids);
      expect(tok.decode(c.ids), c.text).toBe(c.decoded);
      expect(tok.decode(c.ids, { skipSpecialTokens: true }), c.text).toBe(c.decodedSkippingSpecial);
    }
    expect(tok.special).toMatchObject({ bos: 1, eos: 2, pad: 2, unk: 0 });
  });

  it('renders chats with the GGUF chat template as jinja2 did', () => {
    for (const chat of expected.chats) expect(tok.applyChatTemplate(chat.messages, { addGenerationPrompt: true })).toBe(chat.withGenerationPrompt);
  });

  it('splits digits one by one before BPE ("smollm"), so a merge of two digits never applies', () => {
    const meta = ggufMetadata();
    const list = (key: string): (number | bigint | boolean | string)[] => (meta.find(([k]) => k === key)![1] as { items: (number | bigint | boolean | string)[] }).items;
    const tokens = list('tokenizer.ggml.tokens');
    const withMerge = rebuild(ggufMetadata([
      ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', items: [...tokens, '12'] }],
      ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', items: [...list('tokenizer.ggml.token_type'), 1] }],
      ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', items: ['1 2', ...list('tokenizer.ggml.merges')] }],
    ]));
    const t = new HfTokenizer({ tokenizer: withMerge.tokenizer, config: withMerge.config });
    expect(t.encode('12')).toEqual([tokens.indexOf('1'), tokens.indexOf('2')]);
    // The same vocabulary and merges with GPT-2's pre-tokenizer (digit runs kept together) does merge them.
    const gpt2 = rebuild(ggufMetadata([['tokenizer.ggml.pre', { type: 'string', value: 'gpt-2' }],
      ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', items: [...tokens, '12'] }],
      ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', items: [...list('tokenizer.ggml.token_type'), 1] }],
      ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', items: ['1 2', ...list('tokenizer.ggml.merges')] }]]));
    expect(new HfTokenizer({ tokenizer: gpt2.tokenizer, config: gpt2.config }).encode('12')).toEqual([tokens.length]);
  });

  it('adds the bos token when the GGUF says so', () => {
    const withBos = rebuild(ggufMetadata([['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }]]));
    const t = new HfTokenizer({ tokenizer: withBos.tokenizer, config: withBos.config });
    expect(t.encode('Hello', { addSpecialTokens: true })).toEqual([1, ...tok.encode('Hello')]);
  });

  it('refuses a SentencePiece tokenizer, an unknown pre-tokenizer, a bad merge and a bad token id, naming them', () => {
    expect(() => rebuild(ggufMetadata([['tokenizer.ggml.model', { type: 'string', value: 'llama' }]]))).toThrow(/m.gguf: tokenizer.ggml.model is "llama"; this importer rebuilds byte-level BPE tokenizers/);
    expect(() => rebuild(ggufMetadata([['tokenizer.ggml.pre', { type: 'string', value: 'deepseek-llm' }]]))).toThrow(/tokenizer.ggml.pre is "deepseek-llm"; this importer knows the pre-tokenizers smollm, gpt-2/);
    expect(() => rebuild(ggufMetadata([['tokenizer.ggml.merges', { type: 'array', itemType: 'string', items: ['a b', 'abc'] }]]))).toThrow(/tokenizer.ggml.merges\[1\] is "abc", not two tokens/);
    expect(() => rebuild(ggufMetadata([['tokenizer.ggml.eos_token_id', { type: 'u32', value: 99999 }]]))).toThrow(/tokenizer.ggml.eos_token_id is 99999, not a token id below 1280/);
  });
});
