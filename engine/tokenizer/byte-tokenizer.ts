// The byte-level tokenizer of models trained from scratch here: ids 0–255 are UTF-8 bytes, then four
// special tokens. The layout is fixed because the default from-scratch model config has vocab_size 260.
import type { Tokenizer } from './tokenizer.js';

export const BYTE_BOS_ID = 256;
export const BYTE_EOS_ID = 257;
export const BYTE_PAD_ID = 258;
export const BYTE_SEP_ID = 259;
export const BYTE_VOCAB_SIZE = 260;

/** The special tokens' texts by id, in id order starting at BYTE_BOS_ID. */
export const BYTE_SPECIAL_TOKENS: Readonly<Record<number, string>> = Object.freeze({
  [BYTE_BOS_ID]: '<bos>',
  [BYTE_EOS_ID]: '<eos>',
  [BYTE_PAD_ID]: '<pad>',
  [BYTE_SEP_ID]: '<sep>',
});

const SPECIAL_IDS_BY_TEXT: ReadonlyMap<string, number> = new Map(
  Object.entries(BYTE_SPECIAL_TOKENS).map(([id, text]) => [text, Number(id)]),
);
const SPECIAL_SPLIT = /(<bos>|<eos>|<pad>|<sep>)/;

const encoder = new TextEncoder();
// Not fatal: model samples are arbitrary byte sequences and must still become text (U+FFFD).
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function checkId(id: number, index: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= BYTE_VOCAB_SIZE) {
    throw new RangeError(`byte tokenizer: id ${id} at position ${index} is not in 0..${BYTE_VOCAB_SIZE - 1}`);
  }
}

export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = BYTE_VOCAB_SIZE;
  readonly special = Object.freeze({ bos: BYTE_BOS_ID, eos: BYTE_EOS_ID, pad: BYTE_PAD_ID, sep: BYTE_SEP_ID });

  /**
   * The UTF-8 bytes of `text`, with bos first when addSpecialTokens. Special-token text such as "<eos>"
   * stays plain bytes, so user input cannot smuggle control tokens into a prompt; use
   * encodeWithSpecials where that text is meant as tokens. Lone surrogates become U+FFFD.
   */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = Array.from(encoder.encode(text));
    if (options.addSpecialTokens) ids.unshift(BYTE_BOS_ID);
    return ids;
  }

  /** Like encode, but the exact texts "<bos>", "<eos>", "<pad>" and "<sep>" become their ids (for building training data). */
  encodeWithSpecials(text: string): number[] {
    const ids: number[] = [];
    // The capturing split leaves each special text as a piece of its own.
    for (const piece of text.split(SPECIAL_SPLIT)) {
      const special = SPECIAL_IDS_BY_TEXT.get(piece);
      if (special !== undefined) ids.push(special);
      // A loop, not push(...bytes): training documents can exceed the engine's argument limit.
      else for (const byte of encoder.encode(piece)) ids.push(byte);
    }
    return ids;
  }

  /**
   * UTF-8 decoding of the byte ids; invalid sequences become U+FFFD instead of throwing. Special ids
   * appear as their texts, or are dropped (and the bytes around them joined) with skipSpecialTokens.
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    let text = '';
    let run: number[] = [];
    ids.forEach((id, index) => {
      checkId(id, index);
      if (id < 256) {
        run.push(id);
      } else if (!options.skipSpecialTokens) {
        text += decoder.decode(Uint8Array.from(run)) + BYTE_SPECIAL_TOKENS[id];
        run = [];
      }
    });
    return text + decoder.decode(Uint8Array.from(run));
  }

  /** The character of an ASCII byte, "<0xAB>" for the other bytes (no text alone), the name of a special id. */
  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= BYTE_VOCAB_SIZE) return undefined;
    if (id < 0x80) return String.fromCharCode(id);
    if (id < 256) return `<0x${id.toString(16).toUpperCase()}>`;
    return BYTE_SPECIAL_TOKENS[id];
  }

  /** The id of a single-byte character or a special-token text, as idToToken writes them. */
  tokenToId(token: string): number | undefined {
    const special = SPECIAL_IDS_BY_TEXT.get(token);
    if (special !== undefined) return special;
    if (token.length === 1 && token.charCodeAt(0) < 0x80) return token.charCodeAt(0);
    const hex = /^<0x([0-9A-F]{2})>$/.exec(token)?.[1];
    if (hex === undefined) return undefined;
    const byte = Number.parseInt(hex, 16);
    return byte >= 0x80 ? byte : undefined;
  }
}
