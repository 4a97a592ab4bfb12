// A Hugging Face tokenizer.json and tokenizer_config.json rebuilt from a GGUF file's tokenizer metadata
// (tokenizer.ggml.*: vocabulary, merges, token types, pre-tokenizer name, special-token ids, chat
// template), so an imported model tokenizes through the same Hugging Face path (hf-tokenizer.ts) as a
// model directory from the hub.
import { GgufError, type GgufHeader } from '../weights/gguf.js';

type Json = Record<string, unknown>;

const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const BYTE_LEVEL_DECODER = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
const BYTE_LEVEL_POST = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };

/**
 * Pre-tokenizers by llama.cpp's name for them (tokenizer.ggml.pre), as the models' own tokenizer.json
 * define them: "smollm" is SmolLM/SmolLM2's single digits then GPT-2's byte-level regex, "gpt-2" the
 * byte-level regex alone. Other names are refused until checked against llama.cpp on a real model.
 */
const PRE_TOKENIZERS: Readonly<Record<string, Json>> = Object.freeze({
  smollm: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, BYTE_LEVEL] },
  'gpt-2': BYTE_LEVEL,
});

/** llama.cpp's token types (tokenizer.ggml.token_type). */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

const ROLE_KEYS = { bos_token: 'tokenizer.ggml.bos_token_id', eos_token: 'tokenizer.ggml.eos_token_id', pad_token: 'tokenizer.ggml.padding_token_id', unk_token: 'tokenizer.ggml.unknown_token_id' } as const;

export interface GgufTokenizerFiles {
  tokenizer: Json;
  config: Json;
}

function stringList(header: GgufHeader, key: string, source: string): string[] {
  const v = header.metadata.get(key);
  if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) throw new GgufError(`${source}: metadata ${key} ${v === undefined ? 'is missing' : 'must be a list of strings'}`);
  return v;
}

/** tokenizer.json and tokenizer_config.json for the GGUF's tokenizer; fails naming the metadata it cannot use. */
export function tokenizerFilesFromGguf(header: GgufHeader, source: string): GgufTokenizerFiles {
  const meta = header.metadata;
  const model = meta.get('tokenizer.ggml.model');
  if (model !== 'gpt2') {
    throw new GgufError(`${source}: tokenizer.ggml.model is ${JSON.stringify(model ?? null)}; this importer rebuilds byte-level BPE tokenizers ("gpt2"), not SentencePiece or others`);
  }
  const pre = meta.get('tokenizer.ggml.pre') ?? 'default';
  const preTokenizer = typeof pre === 'string' ? PRE_TOKENIZERS[pre] : undefined;
  if (!preTokenizer) throw new GgufError(`${source}: tokenizer.ggml.pre is ${JSON.stringify(pre)}; this importer knows the pre-tokenizers ${Object.keys(PRE_TOKENIZERS).join(', ')}`);
  const tokens = stringList(header, 'tokenizer.ggml.tokens', source);
  const merges = stringList(header, 'tokenizer.ggml.merges', source).map((m, i) => {
    const parts = m.split(' ');
    if (parts.length !== 2) throw new GgufError(`${source}: tokenizer.ggml.merges[${i}] is ${JSON.stringify(m)}, not two tokens separated by one space`);
    return parts;
  });
  const typesValue = meta.get('tokenizer.ggml.token_type');
  const types = typesValue === undefined ? tokens.map(() => TOKEN_TYPE.normal) : typesValue;
  if (!Array.isArray(types) || types.length !== tokens.length || !types.every((t) => typeof t === 'number')) {
    throw new GgufError(`${source}: metadata tokenizer.ggml.token_type must list a number for each of the ${tokens.length} tokens`);
  }
  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  tokens.forEach((token, id) => {
    if (Object.hasOwn(vocab, token)) throw new GgufError(`${source}: token ${JSON.stringify(token)} appears twice (ids ${vocab[token]} and ${id})`);
    vocab[token] = id;
    const type = types[id];
    // Control tokens (<|im_start|>, ...) and user-defined ones are matched whole before BPE, as tokenizer.json's added tokens.
    if (type === TOKEN_TYPE.control || type === TOKEN_TYPE.userDefined) {
      added.push({ id, content: token, single_word: false, lstrip: false, rstrip: false, normalized: type === TOKEN_TYPE.userDefined, special: type === TOKEN_TYPE.control });
    }
  });
  const addBos = meta.get('tokenizer.ggml.add_bos_token') === true;
  const tokenOf = (key: string): string | undefined => {
    const id = meta.get(key);
    if (id === undefined) return undefined;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= tokens.length) throw new GgufError(`${source}: metadata ${key} is ${String(id)}, not a token id below ${tokens.length}`);
    return tokens[id];
  };
  const roles = Object.fromEntries(Object.entries(ROLE_KEYS).flatMap(([role, key]) => {
    const t = tokenOf(key);
    return t === undefined ? [] : [[role, t]];
  }));
  let postProcessor: Json = BYTE_LEVEL_POST;
  if (addBos) {
    const bos = roles.bos_token;
    if (bos === undefined) throw new GgufError(`${source}: tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing`);
    const bosToken = { SpecialToken: { id: bos, type_id: 0 } };
    postProcessor = {
      type: 'Sequence',
      processors: [BYTE_LEVEL_POST, {
        type: 'TemplateProcessing',
        single: [bosToken, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [bosToken, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { [bos]: { id: bos, ids: [vocab[bos]], tokens: [bos] } },
      }],
    };
  }
  const tokenizer: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: postProcessor,
    decoder: BYTE_LEVEL_DECODER,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  const chatTemplate = meta.get('tokenizer.chat_template');
  if (chatTemplate !== undefined && typeof chatTemplate !== 'string') throw new GgufError(`${source}: metadata tokenizer.chat_template must be a string`);
  const contextLength = meta.get(`${String(meta.get('general.architecture'))}.context_length`);
  const config: Json = {
    tokenizer_class: 'GPT2Tokenizer',
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest])),
    clean_up_tokenization_spaces: false,
    add_bos_token: addBos,
    ...roles,
    ...(typeof contextLength === 'number' ? { model_max_length: contextLength } : {}),
    ...(chatTemplate === undefined ? {} : { chat_template: chatTemplate }),
  };
  return { tokenizer, config };
}
