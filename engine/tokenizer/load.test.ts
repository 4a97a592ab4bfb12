// loadTokenizer: a model directory's tokenizer files, and errors that name the file at fault.
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from './hf-tokenizer.js';
import { loadTokenizer } from './load.js';

const fixturesDir = join(import.meta.dirname, 'fixtures');
let root: string;
let serial = 0;

/** A fresh directory with the given files; a source path copies that fixture file, otherwise the text is written. */
async function modelDir(files: Record<string, { copy: string } | string>): Promise<string> {
  const dir = join(root, `model-${serial++}`);
  await mkdir(dir);
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === 'string') await writeFile(join(dir, name), content);
    else await copyFile(join(fixturesDir, content.copy), join(dir, name));
  }
  return dir;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tokenizer-test-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('loadTokenizer', () => {
  it('loads a fixture directory as a Hugging Face tokenizer with its config and chat template', async () => {
    const tok = await loadTokenizer(join(fixturesDir, 'smollm2'));
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect(tok.vocabSize).toBe(1280);
    expect(tok.special).toEqual({ bos: 1, eos: 2, pad: 2, unk: 0 });
    expect(tok.decode(tok.encode('Grüße 👋 <|im_end|>'))).toBe('Grüße 👋 <|im_end|>');
    expect(tok.applyChatTemplate?.([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true })).toMatch(
      /<\|im_start\|>user\nhi<\|im_end\|>\n<\|im_start\|>assistant\n$/,
    );
  });

  it('loads tokenizer.json alone', async () => {
    const dir = await modelDir({ 'tokenizer.json': { copy: 'qwen2/tokenizer.json' } });
    const tok = await loadTokenizer(dir);
    expect(tok.special).toEqual({});
    expect(() => tok.applyChatTemplate?.([{ role: 'user', content: 'hi' }])).toThrow(
      `${join(dir, 'tokenizer.json')}: the tokenizer has no chat template (there is no tokenizer_config.json and no chat_template.jinja)`,
    );
  });

  it('uses chat_template.jinja from the directory', async () => {
    const dir = await modelDir({
      'tokenizer.json': { copy: 'llama3/tokenizer.json' },
      'tokenizer_config.json': { copy: 'llama3/tokenizer_config.json' },
      'chat_template.jinja': '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}',
    });
    const tok = await loadTokenizer(dir);
    expect(tok.applyChatTemplate?.([{ role: 'user', content: 'hi' }])).toBe('<|begin_of_text|>hi');
    const broken = await modelDir({ 'tokenizer.json': { copy: 'llama3/tokenizer.json' }, 'chat_template.jinja': '{% if %}' });
    await expect(loadTokenizer(broken).then((t) => t.applyChatTemplate?.([]))).rejects.toThrow(
      `${join(broken, 'chat_template.jinja')}: the chat template does not parse`,
    );
  });

  it('names the missing tokenizer.json', async () => {
    const dir = await modelDir({ 'tokenizer_config.json': { copy: 'qwen2/tokenizer_config.json' } });
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')} does not exist`);
    const nowhere = join(root, 'no-such-dir');
    await expect(loadTokenizer(nowhere)).rejects.toThrow(`${join(nowhere, 'tokenizer.json')} does not exist`);
  });

  it('names a tokenizer.json that is not JSON', async () => {
    const dir = await modelDir({ 'tokenizer.json': '{"model": {"type": "BPE", ' });
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')} is not valid JSON`);
  });

  it('names a tokenizer.json that is JSON but not a tokenizer', async () => {
    const dir = await modelDir({ 'tokenizer.json': '{"version": "1.0"}' });
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')}: field model must be an object`);
  });

  it('names a tokenizer_config.json that is not JSON or has bad fields', async () => {
    const notJson = await modelDir({ 'tokenizer.json': { copy: 'qwen2/tokenizer.json' }, 'tokenizer_config.json': "{'eos_token': 1}" });
    await expect(loadTokenizer(notJson)).rejects.toThrow(`${join(notJson, 'tokenizer_config.json')} is not valid JSON`);
    const badField = await modelDir({ 'tokenizer.json': { copy: 'qwen2/tokenizer.json' }, 'tokenizer_config.json': '{"eos_token": "</s>"}' });
    await expect(loadTokenizer(badField)).rejects.toThrow(
      `${join(badField, 'tokenizer_config.json')}: eos_token "</s>" is not in the vocabulary of ${join(badField, 'tokenizer.json')}`,
    );
  });

  it('names a tokenizer.json that cannot be read', async () => {
    const dir = await modelDir({});
    await mkdir(join(dir, 'tokenizer.json'));
    await expect(loadTokenizer(dir)).rejects.toThrow(`cannot read ${join(dir, 'tokenizer.json')}`);
  });
});
