// The tokenizer interface shared by the byte-level tokenizer of models trained here and the Hugging Face
// tokenizers of imported models, and loading the latter from a model directory.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeUtf8File, parseJsonText } from '../../storage/local-files.js';
import { HfTokenizer } from './hf-tokenizer.js';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
/** Newer Hugging Face checkpoints keep the chat template in its own file instead of tokenizer_config.json. */
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface Tokenizer {
  /** Number of ids the model's embedding must cover: one past the largest id, special tokens included. */
  readonly vocabSize: number;
  /** Special tokens by role; bos/eos/pad may be undefined when the tokenizer has none. */
  readonly special: { bos?: number; eos?: number; pad?: number; [name: string]: number | undefined };
  /**
   * Text to ids. addSpecialTokens (default false, unlike transformers, because chat templates already
   * write them) adds what the tokenizer puts around a single sequence, e.g. a leading bos.
   * Whether special-token text inside `text` becomes a special id differs by implementation: the byte
   * tokenizer never does (see ByteTokenizer.encodeWithSpecials), Hugging Face tokenizers always do, as
   * their chat templates rely on it, so untrusted content must be checked before it goes into a prompt.
   */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Ids to text. Throws a RangeError for an id the tokenizer does not have. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /**
   * The text of one token id (for streaming/diagnostics): its vocabulary entry, which for byte-level
   * vocabularies is not always valid text on its own. To stream text, decode the accumulated ids.
   */
  idToToken(id: number): string | undefined;
  /** Renders chat messages with the model's chat template (Jinja) when it has one; throws a clear error otherwise. */
  applyChatTemplate?(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
}

async function readOptional(path: string): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return decodeUtf8File(bytes, path);
}

/**
 * Loads the Hugging Face tokenizer of a model directory: tokenizer.json, plus tokenizer_config.json
 * (special-token roles, chat template) and chat_template.jinja when present. Reads local files only.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tokenizerPath = join(dir, TOKENIZER_FILE);
  const configPath = join(dir, TOKENIZER_CONFIG_FILE);
  const templatePath = join(dir, CHAT_TEMPLATE_FILE);
  const tokenizerText = await readOptional(tokenizerPath);
  if (tokenizerText === undefined) {
    throw new Error(`${tokenizerPath} does not exist: a tokenizer directory needs a Hugging Face tokenizer.json`);
  }
  const configText = await readOptional(configPath);
  const chatTemplate = await readOptional(templatePath);
  return new HfTokenizer({
    tokenizer: parseJsonText(tokenizerText, tokenizerPath),
    tokenizerSource: tokenizerPath,
    ...(configText === undefined ? {} : { config: parseJsonText(configText, configPath), configSource: configPath }),
    ...(chatTemplate === undefined ? {} : { chatTemplate, chatTemplateSource: templatePath }),
  });
}
