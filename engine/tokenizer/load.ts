// Loading the Hugging Face tokenizer of a model directory (its own module, so the tokenizer interface
// does not import an implementation of itself).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeUtf8File, parseJsonText } from '../../storage/local-files.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { CHAT_TEMPLATE_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, type Tokenizer } from './tokenizer.js';

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
