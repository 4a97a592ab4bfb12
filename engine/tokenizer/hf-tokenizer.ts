// Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) of imported models, e.g. the byte-level
// BPE of Llama-3, SmolLM2 and Qwen2, with their Jinja chat templates.
//
// Built on @huggingface/tokenizers (tokenizers.js) and @huggingface/jinja: both are pure JS with no
// dependencies, read no files and fetch nothing, so nothing can reach a model hub. The alternative,
// @huggingface/transformers, is the same tokenizer code plus onnxruntime-node/-web (a second,
// differently pinned runtime) and sharp, and it resolves files through its hub loader.
import { Template } from '@huggingface/jinja';
import * as tokenizersJs from '@huggingface/tokenizers';
import type { ChatMessage, Tokenizer } from './tokenizer.js';

/** The part of tokenizers.js's Tokenizer class used here (its documented API). */
interface CoreTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

// The package's type declarations re-export through extensionless relative paths, which NodeNext
// resolution rejects, so its exports would be error-typed here; this states the constructor's real shape.
const CoreTokenizerClass = (tokenizersJs as unknown as { Tokenizer: new (tokenizer: object, config: object) => CoreTokenizer })
  .Tokenizer;

export interface HfTokenizerFiles {
  /** Parsed tokenizer.json. */
  tokenizer: unknown;
  /** Parsed tokenizer_config.json, when the model has one. */
  config?: unknown;
  /** The text of chat_template.jinja; takes precedence over config.chat_template, as in transformers. */
  chatTemplate?: string;
  /** Where each part came from, for error messages. */
  tokenizerSource?: string;
  configSource?: string;
  chatTemplateSource?: string;
}

type Json = Record<string, unknown>;

const isRecord = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const isId = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0;

/** The special-token roles of tokenizer_config.json that are exposed in `special` and to chat templates. */
const ROLES = ['bos', 'eos', 'pad', 'unk'] as const;

/** The tokenizer.json model types tokenizers.js implements. */
const MODEL_TYPES: readonly string[] = ['BPE', 'WordPiece', 'Unigram'];

/** One past the largest id of the model vocabulary and the added tokens. */
function vocabSizeOf(tokenizer: Json, source: string): number {
  const model = tokenizer.model;
  if (!isRecord(model)) throw new Error(`${source}: field model must be an object`);
  // tokenizers.js would guess a legacy model for other types rather than fail.
  if (typeof model.type !== 'string' || !MODEL_TYPES.includes(model.type)) {
    throw new Error(`${source}: model.type ${JSON.stringify(model.type)} is not one of ${MODEL_TYPES.join(', ')}`);
  }
  let size = 0;
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: a list of [piece, score], ids are positions.
    size = vocab.length;
  } else if (isRecord(vocab)) {
    for (const [token, id] of Object.entries(vocab)) {
      if (!isId(id)) throw new Error(`${source}: model.vocab[${JSON.stringify(token)}] must be a non-negative integer id`);
      size = Math.max(size, id + 1);
    }
  } else {
    throw new Error(`${source}: field model.vocab must be an object (token → id) or a list`);
  }
  const added = tokenizer.added_tokens ?? [];
  if (!Array.isArray(added)) throw new Error(`${source}: field added_tokens must be a list`);
  added.forEach((token: unknown, i) => {
    if (!isRecord(token) || !isId(token.id) || typeof token.content !== 'string') {
      throw new Error(`${source}: added_tokens[${i}] needs an integer id and a string content`);
    }
    size = Math.max(size, token.id + 1);
  });
  return size;
}

/** A token in tokenizer_config.json: a string, an AddedToken object with content, or null/absent. */
function tokenText(value: unknown, field: string, source: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.content === 'string') return value.content;
  throw new Error(`${source}: field ${field} must be a token string, an object with a string content, or null`);
}

/** chat_template is a string, or (older configs) a list of named templates of which "default" applies. */
function configChatTemplate(config: Json, source: string): string | undefined {
  const value = config.chat_template;
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named: unknown = (value as unknown[]).find((t) => isRecord(t) && t.name === 'default');
    if (isRecord(named) && typeof named.template === 'string') return named.template;
    throw new Error(`${source}: field chat_template is a list without a {"name": "default", "template": "..."} entry`);
  }
  throw new Error(`${source}: field chat_template must be a string or a list of named templates`);
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly special: Tokenizer['special'];
  private readonly core: CoreTokenizer;
  private readonly source: string;
  private readonly hasConfig: boolean;
  private readonly templateText: string | undefined;
  private readonly templateSource: string;
  /** Variables every chat template sees besides messages, as transformers passes them. */
  private readonly templateTokens: Record<string, string | string[]>;
  private template: Template | undefined;

  constructor(files: HfTokenizerFiles) {
    const source = files.tokenizerSource ?? 'tokenizer.json';
    const configSource = files.configSource ?? 'tokenizer_config.json';
    this.source = source;
    this.hasConfig = files.config !== undefined;
    if (!isRecord(files.tokenizer)) throw new Error(`${source}: expected a JSON object (a Hugging Face tokenizer.json)`);
    const config = files.config ?? {};
    if (!isRecord(config)) throw new Error(`${configSource}: expected a JSON object`);
    this.vocabSize = vocabSizeOf(files.tokenizer, source);
    try {
      this.core = new CoreTokenizerClass({ ...files.tokenizer, added_tokens: files.tokenizer.added_tokens ?? [] }, config);
    } catch (err) {
      throw new Error(`${source}: cannot build the tokenizer: ${(err as Error).message}`, { cause: err });
    }

    const special: Record<string, number | undefined> = {};
    this.templateTokens = {};
    for (const role of ROLES) {
      const text = tokenText(config[`${role}_token`], `${role}_token`, configSource);
      if (text === undefined) continue;
      const id = this.core.token_to_id(text);
      if (id === undefined) throw new Error(`${configSource}: ${role}_token ${JSON.stringify(text)} is not in the vocabulary of ${source}`);
      special[role] = id;
      this.templateTokens[`${role}_token`] = text;
    }
    const additional = config.additional_special_tokens;
    if (Array.isArray(additional)) {
      this.templateTokens.additional_special_tokens = additional.flatMap(
        (token: unknown, i) => tokenText(token, `additional_special_tokens[${i}]`, configSource) ?? [],
      );
    }
    this.special = Object.freeze(special);

    if (files.chatTemplate !== undefined) {
      this.templateText = files.chatTemplate;
      this.templateSource = files.chatTemplateSource ?? 'chat_template.jinja';
    } else {
      this.templateText = configChatTemplate(config, configSource);
      this.templateSource = configSource;
    }
  }

  /** Special-token text in `text` (e.g. "<|im_end|>") becomes its id, as in every Hugging Face tokenizer. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.core.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  /**
   * Exact decoding, like the Rust library: transformers' clean_up_tokenization_spaces (which Llama-3's
   * config turns on) is not applied, because it rewrites text such as "a ." and rewards read the text.
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    ids.forEach((id, index) => {
      if (!Number.isInteger(id) || this.core.id_to_token(id) === undefined) {
        throw new RangeError(`${this.source}: id ${id} at position ${index} is not in the vocabulary`);
      }
    });
    // tokenizers.js rejects an empty list.
    if (ids.length === 0) return '';
    return this.core.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The vocabulary entry, in the byte-level alphabet for byte-level BPE (" world" is "Ġworld"). */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) ? this.core.id_to_token(id) : undefined;
  }

  /** The id of a vocabulary entry or added token (e.g. "<|eot_id|>"), undefined when there is none. */
  tokenToId(token: string): number | undefined {
    return this.core.token_to_id(token);
  }

  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    if (this.templateText === undefined) {
      const where = this.hasConfig ? `${this.templateSource} has no chat_template` : 'there is no tokenizer_config.json';
      throw new Error(`${this.source}: the tokenizer has no chat template (${where} and no chat_template.jinja)`);
    }
    if (this.template === undefined) {
      try {
        this.template = new Template(this.templateText);
      } catch (err) {
        throw new Error(`${this.templateSource}: the chat template does not parse: ${(err as Error).message}`, { cause: err });
      }
    }
    try {
      return this.template.render({
        ...this.templateTokens,
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (err) {
      throw new Error(`${this.templateSource}: the chat template failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
