// Hugging Face tokenizers against the official Python library: ids, tokens and decoding of every fixture
// string, exact round trips, special tokens, chat templates (vs Python's jinja2) and configuration errors.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HfTokenizer } from './hf-tokenizer.js';
import type { ChatMessage } from './tokenizer.js';

interface ExpectedCase {
  text: string;
  ids: number[];
  tokens: string[];
  idsWithSpecialTokens: number[];
  decoded: string;
  decodedSkippingSpecial: string;
}
interface ExpectedFixture {
  vocabSize: number;
  specialTokens: Record<string, number>;
  cases: ExpectedCase[];
  chats: { messages: ChatMessage[]; withoutGenerationPrompt: string; withGenerationPrompt: string }[];
}

const fixturesDir = join(import.meta.dirname, 'fixtures');
const expected = JSON.parse(readFileSync(join(fixturesDir, 'expected.json'), 'utf8')) as {
  fixtures: Record<string, ExpectedFixture>;
};
const readJson = (name: string, file: string): unknown => JSON.parse(readFileSync(join(fixturesDir, name, file), 'utf8'));

function fixture(name: string): { tok: HfTokenizer; expected: ExpectedFixture; tokenizerJson: unknown; config: unknown } {
  const tokenizerJson = readJson(name, 'tokenizer.json');
  const config = readJson(name, 'tokenizer_config.json');
  const tok = new HfTokenizer({
    tokenizer: tokenizerJson,
    config,
    tokenizerSource: `fixtures/${name}/tokenizer.json`,
    configSource: `fixtures/${name}/tokenizer_config.json`,
  });
  const exp = expected.fixtures[name];
  if (!exp) throw new Error(`expected.json has no fixture ${name}`);
  return { tok, expected: exp, tokenizerJson, config };
}

const names = ['smollm2', 'qwen2', 'llama3'] as const;
// Qwen2 normalizes to NFC, so decomposed input comes back composed, exactly as with the Python library.
const normalizes = (name: string): boolean => name === 'qwen2';

const roundTrips = [
  'The quick brown fox jumps over the lazy dog.',
  'Größe, Straße, Äpfel, Öl, Übung — naïve façade, crème brûlée.',
  '强化学习用奖励来微调语言模型。日本語のテキスト、カタカナ、ひらがな。',
  '한국어 Русский Ελληνικά العربية עברית हिन्दी ሰላም',
  'Emoji 😀🚀 👍🏽 ❤️ 🇩🇪🇯🇵 👨‍👩‍👧‍👦 🧑‍💻 🪐 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  'x' + ' '.repeat(17) + 'y' + '\t'.repeat(5) + 'z',
  ' '.repeat(40),
  '\n'.repeat(7),
  '  leading and trailing  \n',
  'mixed \t \n \r\n\t\t  \u00a0\u3000 runs',
  'def f(x):\n\tif x:\n\t\treturn   x  *  2\n\n\n# done   \n',
  "won't can't I'M YOU'RE we'd 'quoted' ''",
  '1234567890 3.14159 -0.5e-10 0xDEADBEEF 1,000,000',
  'a . b , c ? d ! e',
  '\u0000\u0001\u001f\u007f',
];

describe.each(names)('HfTokenizer (%s fixture)', (name) => {
  const { tok, expected: exp } = fixture(name);
  const specials = Object.entries(exp.specialTokens);

  it('has the vocabulary size of the Python library', () => {
    expect(tok.vocabSize).toBe(exp.vocabSize);
  });

  it.each(exp.cases)('encodes $text to the Python library ids', (c) => {
    expect(tok.encode(c.text)).toEqual(c.ids);
    expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids);
    expect(tok.encode(c.text, { addSpecialTokens: true })).toEqual(c.idsWithSpecialTokens);
    expect(c.ids.map((id) => tok.idToToken(id))).toEqual(c.tokens);
  });

  it.each(exp.cases)('decodes the ids of $text like the Python library', (c) => {
    expect(tok.decode(c.idsWithSpecialTokens)).toBe(c.decoded);
    expect(tok.decode(c.idsWithSpecialTokens, { skipSpecialTokens: true })).toBe(c.decodedSkippingSpecial);
  });

  it.each([...exp.cases.map((c) => c.text), ...roundTrips])('round-trips %j', (text) => {
    expect(tok.decode(tok.encode(text))).toBe(normalizes(name) ? text.normalize('NFC') : text);
  });

  it('encodes each special token to its single id and skips it when asked', () => {
    expect(specials.length).toBeGreaterThanOrEqual(3);
    for (const [content, id] of specials) {
      expect(tok.encode(content)).toEqual([id]);
      expect(tok.tokenToId(content)).toBe(id);
      expect(tok.idToToken(id)).toBe(content);
      expect(tok.decode([id])).toBe(content);
      expect(tok.decode([id], { skipSpecialTokens: true })).toBe('');
    }
    const [first, second] = specials;
    if (!first || !second) throw new Error('fixture needs two special tokens');
    const ids = tok.encode(`${first[0]}Hallo Welt${second[0]}\n`);
    expect(ids[0]).toBe(first[1]);
    expect(ids.filter((id) => id === first[1] || id === second[1])).toHaveLength(2);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Hallo Welt\n');
  });

  it('renders the chat template like Python jinja2 (as transformers sets it up)', () => {
    expect(exp.chats.length).toBeGreaterThan(0);
    for (const chat of exp.chats) {
      expect(tok.applyChatTemplate(chat.messages)).toBe(chat.withoutGenerationPrompt);
      expect(tok.applyChatTemplate(chat.messages, { addGenerationPrompt: false })).toBe(chat.withoutGenerationPrompt);
      expect(tok.applyChatTemplate(chat.messages, { addGenerationPrompt: true })).toBe(chat.withGenerationPrompt);
    }
  });

  it('decodes nothing to the empty string and rejects ids outside the vocabulary', () => {
    expect(tok.decode([])).toBe('');
    expect(tok.idToToken(exp.vocabSize)).toBeUndefined();
    expect(tok.idToToken(1.5)).toBeUndefined();
    expect(() => tok.decode([0, exp.vocabSize])).toThrow(RangeError);
    expect(() => tok.decode([0, exp.vocabSize])).toThrow(`fixtures/${name}/tokenizer.json: id ${exp.vocabSize} at position 1`);
    expect(() => tok.decode([-1])).toThrow('id -1 at position 0');
    expect(() => tok.decode([2.5])).toThrow('id 2.5 at position 0');
  });
});

describe('HfTokenizer special-token roles', () => {
  it('takes bos/eos/pad/unk from tokenizer_config.json, leaving absent roles undefined', () => {
    expect(fixture('smollm2').tok.special).toEqual({ bos: 1, eos: 2, pad: 2, unk: 0 });
    expect(fixture('qwen2').tok.special).toEqual({ eos: 1282, pad: 1280 });
    const llama = fixture('llama3').tok;
    expect(llama.special).toEqual({ bos: 1280, eos: 1284 });
    expect(llama.special.pad).toBeUndefined();
    expect(llama.tokenToId('<|end_of_text|>')).toBe(1281);
  });

  it('adds bos only when the tokenizer has a post-processor for it (Llama-3)', () => {
    expect(fixture('llama3').tok.encode('Hi', { addSpecialTokens: true })[0]).toBe(1280);
    const smol = fixture('smollm2').tok;
    expect(smol.encode('Hi', { addSpecialTokens: true })).toEqual(smol.encode('Hi'));
  });

  it('accepts AddedToken objects in token fields', () => {
    const { tokenizerJson } = fixture('smollm2');
    const tok = new HfTokenizer({
      tokenizer: tokenizerJson,
      config: { bos_token: { content: '<|im_start|>', __type: 'AddedToken' }, eos_token: null },
    });
    expect(tok.special).toEqual({ bos: 1 });
  });

  it('works without a tokenizer_config.json (no roles, no chat template)', () => {
    const { tokenizerJson } = fixture('qwen2');
    const tok = new HfTokenizer({ tokenizer: tokenizerJson, tokenizerSource: 'model/tokenizer.json' });
    expect(tok.special).toEqual({});
    expect(tok.encode('<|im_start|>')).toEqual([1281]);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(
      'model/tokenizer.json: the tokenizer has no chat template (there is no tokenizer_config.json and no chat_template.jinja)',
    );
  });
});

describe('HfTokenizer chat templates', () => {
  const conversation: ChatMessage[] = [
    { role: 'user', content: 'What is 2 + 2?' },
    { role: 'assistant', content: '2 + 2 = 4.' },
  ];

  it('renders a two-turn ChatML conversation (SmolLM2 style)', () => {
    const tok = fixture('smollm2').tok;
    const withoutPrompt =
      '<|im_start|>system\nYou are a small assistant trained with reinforcement learning.<|im_end|>\n' +
      '<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n' +
      '<|im_start|>assistant\n2 + 2 = 4.<|im_end|>\n';
    expect(tok.applyChatTemplate(conversation)).toBe(withoutPrompt);
    expect(tok.applyChatTemplate(conversation, { addGenerationPrompt: true })).toBe(withoutPrompt + '<|im_start|>assistant\n');
  });

  it('renders a two-turn Llama-3 conversation with bos from the config', () => {
    const tok = fixture('llama3').tok;
    const withoutPrompt =
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n2 + 2 = 4.<|eot_id|>';
    expect(tok.applyChatTemplate(conversation)).toBe(withoutPrompt);
    expect(tok.applyChatTemplate(conversation, { addGenerationPrompt: true })).toBe(
      withoutPrompt + '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });

  it('renders prompts whose control tokens encode to special ids', () => {
    const tok = fixture('qwen2').tok;
    const ids = tok.encode(tok.applyChatTemplate(conversation, { addGenerationPrompt: true }));
    const imStart = tok.tokenToId('<|im_start|>');
    const imEnd = tok.tokenToId('<|im_end|>');
    expect(ids.filter((id) => id === imStart)).toHaveLength(4);
    expect(ids.filter((id) => id === imEnd)).toHaveLength(3);
    expect(ids.at(-1)).toBe(tok.tokenToId('Ċ'));
  });

  it("reports the template's raise_exception with the config path", () => {
    const tok = fixture('qwen2').tok;
    expect(() => tok.applyChatTemplate([{ role: 'tool', content: '{}' }])).toThrow(
      'fixtures/qwen2/tokenizer_config.json: the chat template failed: Unsupported role: tool',
    );
  });

  it('reports a template that does not parse', () => {
    const { tokenizerJson } = fixture('smollm2');
    const tok = new HfTokenizer({ tokenizer: tokenizerJson, config: { chat_template: '{% for m in %}' }, configSource: 'cfg.json' });
    expect(() => tok.applyChatTemplate(conversation)).toThrow('cfg.json: the chat template does not parse');
    const none = new HfTokenizer({ tokenizer: tokenizerJson, config: { eos_token: '<|im_end|>' }, tokenizerSource: 't.json', configSource: 'cfg.json' });
    expect(() => none.applyChatTemplate(conversation)).toThrow(
      't.json: the tokenizer has no chat template (cfg.json has no chat_template and no chat_template.jinja)',
    );
  });

  it('prefers chat_template.jinja over the config, and takes "default" from a list of named templates', () => {
    const { tokenizerJson, config } = fixture('smollm2');
    const fromFile = new HfTokenizer({ tokenizer: tokenizerJson, config, chatTemplate: '{{ messages | length }} {{ eos_token }}' });
    expect(fromFile.applyChatTemplate(conversation)).toBe('2 <|im_end|>');
    const named = new HfTokenizer({
      tokenizer: tokenizerJson,
      config: {
        chat_template: [
          { name: 'tool_use', template: 'tools' },
          { name: 'default', template: '{% for m in messages %}[{{ m.role }}]{% endfor %}' },
        ],
      },
    });
    expect(named.applyChatTemplate(conversation)).toBe('[user][assistant]');
  });
});

describe('HfTokenizer configuration errors', () => {
  const { tokenizerJson } = fixture('smollm2');
  const base = tokenizerJson as Record<string, unknown>;

  it.each([
    ['not an object', [], 'tok.json: expected a JSON object'],
    ['no model', { ...base, model: undefined }, 'tok.json: field model must be an object'],
    ['no vocab', { ...base, model: { type: 'BPE', merges: [] } }, 'tok.json: field model.vocab must be'],
    ['a bad vocab id', { ...base, model: { type: 'BPE', vocab: { a: -1 }, merges: [] } }, 'tok.json: model.vocab["a"] must be'],
    ['bad added tokens', { ...base, added_tokens: {} }, 'tok.json: field added_tokens must be a list'],
    ['an added token without id', { ...base, added_tokens: [{ content: 'x' }] }, 'tok.json: added_tokens[0] needs'],
    ['an unknown model type', { ...base, model: { type: 'WordLevel', vocab: {} } }, 'tok.json: model.type "WordLevel" is not one of BPE'],
    ['an unknown pre-tokenizer', { ...base, pre_tokenizer: { type: 'Nope' } }, 'tok.json: cannot build the tokenizer: '],
  ])('names the file for %s', (_what, tokenizer, message) => {
    expect(() => new HfTokenizer({ tokenizer, tokenizerSource: 'tok.json' })).toThrow(message);
  });

  it.each([
    ['not an object', 'text', 'cfg.json: expected a JSON object'],
    ['a token of the wrong type', { eos_token: 7 }, 'cfg.json: field eos_token must be a token string'],
    ['a token outside the vocabulary', { bos_token: '<s>' }, 'cfg.json: bos_token "<s>" is not in the vocabulary of tok.json'],
    ['a bad chat_template', { chat_template: 5 }, 'cfg.json: field chat_template must be a string'],
    ['a chat_template list without default', { chat_template: [{ name: 'x', template: '' }] }, 'cfg.json: field chat_template is a list'],
    ['a bad additional special token', { additional_special_tokens: [3] }, 'cfg.json: field additional_special_tokens[0]'],
  ])('names the config for %s', (_what, config, message) => {
    expect(() => new HfTokenizer({ tokenizer: tokenizerJson, config, tokenizerSource: 'tok.json', configSource: 'cfg.json' })).toThrow(
      message,
    );
  });
});

describe('HfTokenizer and the network', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('never fetches anything', () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockRejectedValue(new Error('no network in tests'));
    for (const name of names) {
      const { tok, expected: exp } = fixture(name);
      const firstChat = exp.chats[0];
      if (!firstChat) throw new Error('fixture without chats');
      tok.decode(tok.encode(tok.applyChatTemplate(firstChat.messages, { addGenerationPrompt: true })));
    }
    expect(fetchSpy).not.toHaveBeenCalled();
  });
});
