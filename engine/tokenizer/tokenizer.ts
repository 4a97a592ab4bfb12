// The tokenizer interface shared by the byte-level tokenizer of models trained here and the Hugging Face
// tokenizers of imported models, and the names of a model directory's tokenizer files.

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
