// Optional LLM-judge metric for revisions: an OpenAI-compatible chat model compares a candidate with a
// baseline (golden revision shown), asked in both orders so a judge's position bias cannot make a win.

/** One comparison: the task, the authors' (golden) revision, and the two revisions to compare. */
export interface JudgeItem {
  instruction: string;
  original: string;
  golden: string;
  candidate: string;
  baseline: string;
}

export type JudgeVerdict = 'A' | 'B' | 'tie';

/** One of the two questions asked about an item. */
export interface JudgeCall {
  /** Which slot the candidate was shown in. */
  candidatePosition: 'A' | 'B';
  /** The judge's reply as it came (for auditing unparseable answers). */
  reply: string;
  /** The parsed verdict; an unparseable reply counts as 'tie'. */
  verdict: JudgeVerdict;
  parsed: boolean;
  /** The verdict translated to the candidate's point of view. */
  prefers: 'candidate' | 'baseline' | 'tie';
}

export interface JudgeItemResult {
  index: number;
  outcome: 'win' | 'loss' | 'tie';
  /** [candidate shown as A, candidate shown as B]. */
  calls: [JudgeCall, JudgeCall];
}

export interface JudgeResult {
  wins: number;
  losses: number;
  ties: number;
  /** wins / items (ties count as not won); 0 for no items. */
  winRate: number;
  /** Replies that were neither A, B nor tie (each counted as a tie for its order). */
  unparseable: number;
  perItem: JudgeItemResult[];
}

export interface JudgeOptions {
  /** Where DRO_JUDGE_URL, DRO_JUDGE_API_KEY and DRO_JUDGE_MODEL are read; process.env by default. */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
  /** Per request; 60 s by default. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export class JudgeError extends Error {
  override readonly name = 'JudgeError';
}

interface JudgeConfig {
  endpoint: string;
  /** The endpoint as it may appear in messages: no user info, no query. */
  shownEndpoint: string;
  apiKey: string;
  model: string;
}

function requireEnv(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name]?.trim();
  if (!value) throw new JudgeError(`the LLM judge needs the environment variable ${name}`);
  return value;
}

function judgeConfig(env: NodeJS.ProcessEnv): JudgeConfig {
  const base = requireEnv(env, 'DRO_JUDGE_URL');
  const apiKey = requireEnv(env, 'DRO_JUDGE_API_KEY');
  const model = requireEnv(env, 'DRO_JUDGE_MODEL');
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new JudgeError('DRO_JUDGE_URL is not a valid URL');
  }
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/chat/completions`;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new JudgeError('DRO_JUDGE_URL must be an http(s) URL');
  // fetch refuses user info in URLs, and its error would show it; the key belongs in DRO_JUDGE_API_KEY.
  if (url.username !== '' || url.password !== '') throw new JudgeError('DRO_JUDGE_URL must not contain user:password@; put the key in DRO_JUDGE_API_KEY');
  // A query (e.g. ?api-version=) is sent but never shown: some services take keys there too.
  const shown = new URL(url.href);
  shown.search = '';
  return { endpoint: url.href, shownEndpoint: shown.href, apiKey, model };
}

const SYSTEM_PROMPT =
  'You are an expert editor of scientific papers. You compare two revisions of a paragraph, A and B, ' +
  "and decide which one better carries out the revision instruction. The authors' own revision is shown " +
  'as a reference of a good revision; a revision need not copy it. Answer with exactly one of: A, B, tie.';

function userPrompt(item: JudgeItem, a: string, b: string): string {
  return [
    `Revision instruction: ${item.instruction}`,
    `Original paragraph:\n${item.original}`,
    `Reference revision by the authors:\n${item.golden}`,
    `Revision A:\n${a}`,
    `Revision B:\n${b}`,
    'Which revision is better, A or B? Answer with exactly one of: A, B, tie.',
  ].join('\n\n');
}

/**
 * The verdict in a judge's reply, or undefined. Accepted: the bare answer ("A", "b.", "**Tie**"), a
 * labelled one ("Answer: B", "Verdict - tie", "Revision A is better"), or a reply that starts with A/B
 * followed by punctuation or a line break ("A: it follows…"). A capital "A" used as an article ("A better
 * choice…") is not a verdict; a reply naming both revisions as better is unparseable.
 */
export function parseJudgeVerdict(reply: string): JudgeVerdict | undefined {
  const stripped = reply.replace(/[*_`"'“”()[\]]/g, '').trim();
  const bare = /^(A|B|tie|draw|equal)\s*[.!]?$/i.exec(stripped);
  if (bare) return toVerdict(bare[1]!);
  const labelled = [...stripped.matchAll(/\b(?:answer|verdict|winner|choice|decision|preference)\s*(?:is)?\s*[:=-]?\s*(?:revision\s+)?(A|B|tie)\b/gi)];
  const better = [...stripped.matchAll(/\b(?:revision|option|response)\s+(A|B)\s+is\s+better\b/gi)];
  const found = new Set([...labelled, ...better].map((m) => toVerdict(m[1]!)));
  if (found.size === 1) return [...found][0];
  if (found.size > 1) return undefined;
  const leading = /^(A|B)\s*(?:$|[.:,;!\n-])/.exec(stripped);
  if (leading) return toVerdict(leading[1]!);
  if (/^tie\b/i.test(stripped)) return 'tie';
  return undefined;
}

function toVerdict(word: string): JudgeVerdict {
  const w = word.toLowerCase();
  return w === 'a' ? 'A' : w === 'b' ? 'B' : 'tie';
}

function redact(text: string, secret: string): string {
  return text.split(secret).join('[redacted]');
}

async function askJudge(config: JudgeConfig, item: JudgeItem, a: string, b: string, options: JudgeOptions): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
  const signal = AbortSignal.any(signals);
  const body = JSON.stringify({
    model: config.model,
    temperature: 0,
    messages: [
      { role: 'system', content: SYSTEM_PROMPT },
      { role: 'user', content: userPrompt(item, a, b) },
    ],
  });
  const where = `LLM judge at ${config.shownEndpoint}`;
  const doFetch = options.fetch ?? fetch;
  let text: string;
  let status: number;
  try {
    const response = await doFetch(config.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${config.apiKey}` },
      body,
      signal,
    });
    status = response.status;
    text = await response.text();
  } catch (error) {
    if (options.signal?.aborted) throw new JudgeError(`${where}: request aborted`);
    if (signal.aborted) throw new JudgeError(`${where}: no answer within ${timeoutMs} ms (timeout)`);
    throw new JudgeError(redact(`${where}: request failed: ${(error as Error).message}`, config.apiKey));
  }
  if (status < 200 || status >= 300) {
    // Some servers echo the request or the header back; the key must not travel on in the message.
    throw new JudgeError(redact(`${where}: HTTP ${status}: ${text.slice(0, 300)}`, config.apiKey));
  }
  let content: unknown;
  try {
    const parsed = JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] };
    content = parsed.choices?.[0]?.message?.content;
  } catch {
    content = undefined;
  }
  if (typeof content !== 'string') {
    throw new JudgeError(redact(`${where}: malformed response (HTTP ${status}), no choices[0].message.content: ${text.slice(0, 200)}`, config.apiKey));
  }
  return content;
}

function judgeCall(reply: string, candidatePosition: 'A' | 'B'): JudgeCall {
  const parsedVerdict = parseJudgeVerdict(reply);
  const verdict = parsedVerdict ?? 'tie';
  const prefers = verdict === 'tie' ? 'tie' : verdict === candidatePosition ? 'candidate' : 'baseline';
  return { candidatePosition, reply, verdict, parsed: parsedVerdict !== undefined, prefers };
}

/**
 * Asks the judge about every item twice, candidate as A then candidate as B. The rule: a win only when
 * both orders prefer the candidate, a loss only when both prefer the baseline, anything else (a tie in
 * either order, disagreeing orders, an unparseable reply) is a tie, so a judge that always names the
 * same slot yields only ties. Requests run one after another; the first failing request rejects.
 */
export async function judgePairwise(items: readonly JudgeItem[], options: JudgeOptions = {}): Promise<JudgeResult> {
  const config = judgeConfig(options.env ?? process.env);
  const perItem: JudgeItemResult[] = [];
  let wins = 0;
  let losses = 0;
  let unparseable = 0;
  for (const [index, item] of items.entries()) {
    const first = judgeCall(await askJudge(config, item, item.candidate, item.baseline, options), 'A');
    const second = judgeCall(await askJudge(config, item, item.baseline, item.candidate, options), 'B');
    unparseable += (first.parsed ? 0 : 1) + (second.parsed ? 0 : 1);
    const outcome = first.prefers === 'candidate' && second.prefers === 'candidate' ? 'win' : first.prefers === 'baseline' && second.prefers === 'baseline' ? 'loss' : 'tie';
    if (outcome === 'win') wins++;
    if (outcome === 'loss') losses++;
    perItem.push({ index, outcome, calls: [first, second] });
  }
  const ties = items.length - wins - losses;
  return { wins, losses, ties, winRate: items.length === 0 ? 0 : wins / items.length, unparseable, perItem };
}
