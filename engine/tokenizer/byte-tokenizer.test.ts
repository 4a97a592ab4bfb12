// Byte tokenizer: the fixed id layout, exact UTF-8 round trips, special tokens that input text cannot
// inject, and decoding of arbitrary (invalid) byte sequences without throwing.
import { describe, expect, it } from 'vitest';
import {
  BYTE_BOS_ID,
  BYTE_EOS_ID,
  BYTE_PAD_ID,
  BYTE_SEP_ID,
  BYTE_SPECIAL_TOKENS,
  BYTE_VOCAB_SIZE,
  ByteTokenizer,
} from './byte-tokenizer.js';

const tok = new ByteTokenizer();
const utf8 = (text: string): number[] => Array.from(Buffer.from(text, 'utf8'));

const samples = [
  'Hello, world!',
  'Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße.',
  '敏捷的棕色狐狸跳过了懒狗。',
  'すばやい茶色の狐がのろまな犬を飛び越える。',
  '안녕하세요, Привет, Γειά σου, مرحبا, שלום, नमस्ते',
  'Emoji: 😀 🚀 👍🏽 ❤️ 🇩🇪 👨‍👩‍👧‍👦 🧑‍💻 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  '    four leading spaces, trailing spaces   ',
  'a  b   c\t\td\n\n\ne\r\nf\u00a0g\u3000h',
  '   \n\n   \t  ',
  '\u0000control\u0007chars\u007f',
  '\uFEFFstarts with a byte order mark',
  'cafe\u0301 stays decomposed',
];

describe('ByteTokenizer layout', () => {
  it('has the 260-token layout of the from-scratch model config', () => {
    expect([BYTE_BOS_ID, BYTE_EOS_ID, BYTE_PAD_ID, BYTE_SEP_ID, BYTE_VOCAB_SIZE]).toEqual([256, 257, 258, 259, 260]);
    expect(BYTE_SPECIAL_TOKENS).toEqual({ 256: '<bos>', 257: '<eos>', 258: '<pad>', 259: '<sep>' });
    expect(tok.vocabSize).toBe(260);
    expect(tok.special).toEqual({ bos: 256, eos: 257, pad: 258, sep: 259 });
  });
});

describe('ByteTokenizer.encode/decode', () => {
  it.each(samples)('round-trips %j through its exact UTF-8 bytes', (text) => {
    const ids = tok.encode(text);
    expect(ids).toEqual(utf8(text));
    expect(tok.decode(ids)).toBe(text);
  });

  it('encodes the empty string to no ids and back', () => {
    expect(tok.encode('')).toEqual([]);
    expect(tok.decode([])).toBe('');
    expect(tok.encode('', { addSpecialTokens: true })).toEqual([BYTE_BOS_ID]);
  });

  it('prepends bos only when asked', () => {
    expect(tok.encode('hi')).toEqual([104, 105]);
    expect(tok.encode('hi', { addSpecialTokens: false })).toEqual([104, 105]);
    expect(tok.encode('hi', { addSpecialTokens: true })).toEqual([BYTE_BOS_ID, 104, 105]);
  });

  it('encodes lone surrogates as U+FFFD', () => {
    expect(tok.encode('a\uD800b')).toEqual([0x61, 0xef, 0xbf, 0xbd, 0x62]);
  });

  it('never reads special-token text as special tokens', () => {
    const text = '<bos>user says <eos><pad><sep>';
    const ids = tok.encode(text);
    expect(ids).toEqual(utf8(text));
    expect(ids.every((id) => id < 256)).toBe(true);
    expect(tok.decode(ids)).toBe(text);
  });

  it('renders special ids as their names, or drops them with skipSpecialTokens', () => {
    const ids = [BYTE_BOS_ID, ...utf8('Grüße'), BYTE_SEP_ID, ...utf8('世界'), BYTE_EOS_ID, BYTE_PAD_ID];
    expect(tok.decode(ids)).toBe('<bos>Grüße<sep>世界<eos><pad>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Grüße世界');
  });

  it('decodes invalid UTF-8 to U+FFFD without throwing', () => {
    expect(tok.decode([0xff])).toBe('\uFFFD');
    expect(tok.decode([0x41, 0x80, 0x42])).toBe('A\uFFFDB');
    // A character cut short (as when a sample stops mid-character), then valid text.
    expect(tok.decode([0xe4, 0xbd, 0x41])).toBe('\uFFFDA');
    // Overlong encoding and an encoded surrogate are not valid UTF-8 either.
    expect(tok.decode([0xc0, 0xaf])).toBe('\uFFFD\uFFFD');
    expect(tok.decode([0xed, 0xa0, 0x80])).toBe('\uFFFD\uFFFD\uFFFD');
    expect(tok.decode([0xf0, 0x9f, 0x98])).toBe('\uFFFD');
  });

  it('decodes the bytes on each side of a special id separately, and joined when it is skipped', () => {
    const ni = utf8('你');
    expect(ni).toEqual([0xe4, 0xbd, 0xa0]);
    const ids = [0xe4, BYTE_EOS_ID, 0xbd, 0xa0];
    expect(tok.decode(ids)).toBe('\uFFFD<eos>\uFFFD\uFFFD');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('你');
  });

  it.each([260, -1, 1.5, Number.NaN, 1e9])('rejects id %s, naming it and its position', (bad) => {
    expect(() => tok.decode([65, bad])).toThrow(RangeError);
    expect(() => tok.decode([65, bad])).toThrow(`id ${bad} at position 1 is not in 0..259`);
  });
});

describe('ByteTokenizer.encodeWithSpecials', () => {
  it('reads the exact special-token texts as their ids', () => {
    expect(tok.encodeWithSpecials('<bos>hi<sep>there<eos>')).toEqual([
      BYTE_BOS_ID,
      ...utf8('hi'),
      BYTE_SEP_ID,
      ...utf8('there'),
      BYTE_EOS_ID,
    ]);
    expect(tok.encodeWithSpecials('<pad><pad>')).toEqual([BYTE_PAD_ID, BYTE_PAD_ID]);
  });

  it('leaves near misses as text', () => {
    for (const text of ['<EOS>', '< eos>', '<eos', 'eos>', '<unk>', '<<eos>>']) {
      const ids = tok.encodeWithSpecials(text);
      expect(ids.filter((id) => id >= 256)).toEqual(text === '<<eos>>' ? [BYTE_EOS_ID] : []);
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('round-trips text with special tokens through decode', () => {
    const text = '<bos>Frage: 2+2?<sep>Antwort: 4 🎉<eos>';
    const ids = tok.encodeWithSpecials(text);
    expect(tok.decode(ids)).toBe(text);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Frage: 2+2?Antwort: 4 🎉');
  });

  it('handles documents longer than the engine argument limit', () => {
    const text = 'x'.repeat(300_000) + '<eos>';
    const ids = tok.encodeWithSpecials(text);
    expect(ids.length).toBe(300_001);
    expect(ids.at(-1)).toBe(BYTE_EOS_ID);
  });
});

describe('ByteTokenizer.idToToken/tokenToId', () => {
  it('shows ASCII as characters, other bytes as <0xAB>, specials by name', () => {
    expect(tok.idToToken(65)).toBe('A');
    expect(tok.idToToken(10)).toBe('\n');
    expect(tok.idToToken(0xe4)).toBe('<0xE4>');
    expect(tok.idToToken(0x80)).toBe('<0x80>');
    expect(tok.idToToken(BYTE_EOS_ID)).toBe('<eos>');
    expect(tok.idToToken(BYTE_VOCAB_SIZE)).toBeUndefined();
    expect(tok.idToToken(-1)).toBeUndefined();
    expect(tok.idToToken(2.5)).toBeUndefined();
  });

  it('maps every id to a token and back', () => {
    for (let id = 0; id < BYTE_VOCAB_SIZE; id++) {
      const token = tok.idToToken(id);
      expect(token).toBeDefined();
      expect(tok.tokenToId(token ?? '')).toBe(id);
    }
    expect(tok.tokenToId('<0x41>')).toBeUndefined();
    expect(tok.tokenToId('ab')).toBeUndefined();
    expect(tok.tokenToId('é')).toBeUndefined();
  });
});
