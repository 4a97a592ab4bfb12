// `dro model merge`: folds a PEFT LoRA adapter into its base model and writes a plain model directory.
import type { Command } from 'commander';
import { mergeAdapterToDir } from '../../engine/index.js';
import { textOption } from '../options.js';

interface MergeOptions {
  model: string;
  adapter: string;
  out: string;
}

/** Registers `merge` under the `model` command group. */
export function registerMergeCommand(model: Command): void {
  model
    .command('merge')
    .description(
      "merge a LoRA adapter into its base model (W' = W + (lora_alpha/r)·B·A for every adapted projection) and write a model directory: config.json, model.safetensors (float32), and the base's tokenizer.json and tokenizer_config.json when it has them",
    )
    .addOption(textOption('--model <dir>', 'base model directory the adapter was trained on (config.json, model.safetensors)').makeOptionMandatory())
    .addOption(textOption('--adapter <path>', 'adapter_model.safetensors, or the directory holding it; adapter_config.json must sit beside it (e.g. a LoRA run checkpoint)').makeOptionMandatory())
    .addOption(textOption('--out <dir>', 'model directory to write; must not exist yet').makeOptionMandatory())
    .action((opts: MergeOptions) => modelMerge(opts));
}

async function modelMerge(opts: MergeOptions): Promise<void> {
  const started = performance.now();
  const { lora, files } = await mergeAdapterToDir(opts.model, opts.adapter, opts.out);
  console.log(`wrote ${opts.out}: ${files.join(', ')} (rank ${lora.rank}, alpha ${lora.alpha}, ${lora.targets.join(', ')} merged) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
