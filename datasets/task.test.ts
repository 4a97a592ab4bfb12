// The one completion rule: a table of well-formed and malformed completions, each split into chain,
// reasoning and answer as documented, by every task alike, and the answer the training step rewards is
// the one the evaluation metrics score (synthetic accuracy, ParaRev length ratio).
import { describe, expect, it } from 'vitest';
import { finqaTask } from './finqa.js';
import { pararevTask, type PararevExample } from './pararev.js';
import { syntheticTask, type SyntheticExample } from './synthetic.js';
import { parseThinkAnswer, type ParsedCompletion, type Task } from './task.js';

const rows: ({ name: string; text: string } & ParsedCompletion)[] = [
  { name: 'well-formed', text: '<think>4+4=8</think> The result is 8.', chain: '<think>4+4=8</think>', reasoning: '4+4=8', answer: 'The result is 8.', wellFormed: true },
  { name: 'no </think>', text: '<think>4+4=8, so the result is 8.', chain: '<think>4+4=8, so the result is 8.</think>', reasoning: '4+4=8, so the result is 8.', answer: '', wellFormed: false },
  { name: 'no tags at all', text: 'The result is 8.', chain: 'The result is 8.</think>', reasoning: 'The result is 8.', answer: '', wellFormed: false },
  { name: 'repeated </think>', text: '<think>4+4=8</think> 7 </think> 8', chain: '<think>4+4=8</think>', reasoning: '4+4=8', answer: '7 </think> 8', wellFormed: false },
  { name: 'repeated </think> without <think>', text: '4+4=8</think> 7 </think> 8', chain: '4+4=8</think>', reasoning: '4+4=8', answer: '7 </think> 8', wellFormed: false },
  { name: '</think> before <think>', text: 'hm</think> 7 <think>4+4=8</think> 8', chain: 'hm</think>', reasoning: 'hm', answer: '7 <think>4+4=8</think> 8', wellFormed: false },
  { name: 'repeated <think>', text: '<think>4+4<think>=8</think> 8', chain: '<think>4+4<think>=8</think>', reasoning: '4+4<think>=8', answer: '8', wellFormed: false },
  { name: 'leading text', text: 'Sure. <think>4+4=8</think> 8', chain: 'Sure. <think>4+4=8</think>', reasoning: '4+4=8', answer: '8', wellFormed: false },
  { name: 'empty answer', text: '<think>4+4=8</think>  \n', chain: '<think>4+4=8</think>', reasoning: '4+4=8', answer: '', wellFormed: false },
];

const tasks: Task[] = [syntheticTask, finqaTask, pararevTask];
const synthetic: SyntheticExample = { id: 'four-plus-four', a: 4, b: 4, op: '+', answer: 8, digits: 1, filler: '' };
const paragraph: PararevExample = { id: 'p#1', paragraphId: 'p', instruction: 'Shorten.', labels: [], original: 'one two three', revised: 'one two', modelRevisions: {} };
const words = (text: string): number => (text.trim() === '' ? 0 : text.trim().split(/\s+/).length);

describe('parseThinkAnswer', () => {
  it.each(rows)('$name', ({ name: _name, text, ...expected }) => {
    expect(parseThinkAnswer(text)).toEqual(expected);
    // The training step reads chain and answer through the task; every task splits by the one rule.
    for (const task of tasks) expect(task.parseCompletion(text), task.name).toEqual(expected);
  });

  it.each(rows)('$name: evaluation scores the answer the training step rewards', ({ text }) => {
    const trained = syntheticTask.parseCompletion(text).answer;
    const accuracy = syntheticTask.metrics([{ exampleId: synthetic.id, completions: [text] }], [synthetic]).accuracy;
    expect(accuracy).toBe(syntheticTask.answerCorrect!(trained, synthetic) ? 1 : 0);
    const { lengthRatio } = pararevTask.metrics([{ exampleId: paragraph.id, completions: [text] }], [paragraph]);
    expect(lengthRatio).toBe(words(pararevTask.parseCompletion(text).answer) / words(paragraph.revised));
  });
});
