// The LLM judge against a local OpenAI-compatible stand-in (node:http on 127.0.0.1): the requests it
// sends, win/loss/tie counting over both orders, verdict parsing, and errors that never show the key.
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { judgePairwise, JudgeError, parseJudgeVerdict } from './llm-judge.js';
import type { JudgeItem } from './llm-judge.js';

const KEY = 'sk-test-SECRET-key-4242';
const MARKER = 'MARKER';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: { model: string; temperature: number; messages: { role: string; content: string }[] };
}

type Handler = (seen: Seen, res: ServerResponse) => void;

let server: Server;
let baseUrl = '';
let seen: Seen[] = [];
let handler: Handler;

function reply(res: ServerResponse, content: string): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content } }] }));
}

/** The revision shown in a slot of the judge's user message. */
function slot(user: string, name: 'A' | 'B'): string {
  const match = new RegExp(`Revision ${name}:\\n([\\s\\S]*?)(?:\\n\\nRevision B:|\\n\\nWhich revision)`).exec(user);
  return match?.[1] ?? '';
}

/** A fair judge: prefers the slot whose revision contains the marker word, tie if both or neither do. */
const markerJudge: Handler = (s, res) => {
  const user = s.body.messages[1]!.content;
  const a = slot(user, 'A').includes(MARKER);
  const b = slot(user, 'B').includes(MARKER);
  reply(res, a === b ? 'tie' : a ? 'A' : 'B');
};

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      const entry: Seen = { method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body: JSON.parse(raw) as Seen['body'] };
      seen.push(entry);
      handler(entry, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen = [];
  handler = markerJudge;
});

const env = (): NodeJS.ProcessEnv => ({ DRO_JUDGE_URL: baseUrl, DRO_JUDGE_API_KEY: KEY, DRO_JUDGE_MODEL: 'judge-model' });

function item(candidate: string, baseline: string): JudgeItem {
  return { instruction: 'Make it concise.', original: 'A long original paragraph.', golden: 'The golden revision.', candidate, baseline };
}

/** Resolves to the rejection message, failing the test when the promise resolves. */
async function errorOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(JudgeError);
    return (error as Error).message;
  }
  throw new Error('expected a rejection');
}

describe('judgePairwise requests', () => {
  it('posts both orders to /chat/completions with the model, messages and bearer key', async () => {
    await judgePairwise([item(`cand ${MARKER}`, 'base')], { env: { ...env(), DRO_JUDGE_URL: `${baseUrl}/` } });
    expect(seen).toHaveLength(2);
    for (const s of seen) {
      expect(s.method).toBe('POST');
      expect(s.url).toBe('/v1/chat/completions');
      expect(s.authorization).toBe(`Bearer ${KEY}`);
      expect(s.body.model).toBe('judge-model');
      expect(s.body.temperature).toBe(0);
      expect(s.body.messages.map((m) => m.role)).toEqual(['system', 'user']);
      expect(s.body.messages[0]!.content).toContain('A, B, tie');
      const user = s.body.messages[1]!.content;
      expect(user).toContain('Revision instruction: Make it concise.');
      expect(user).toContain('Original paragraph:\nA long original paragraph.');
      expect(user).toContain('Reference revision by the authors:\nThe golden revision.');
    }
    // First the candidate as A, then swapped.
    expect(slot(seen[0]!.body.messages[1]!.content, 'A')).toBe(`cand ${MARKER}`);
    expect(slot(seen[0]!.body.messages[1]!.content, 'B')).toBe('base');
    expect(slot(seen[1]!.body.messages[1]!.content, 'A')).toBe('base');
    expect(slot(seen[1]!.body.messages[1]!.content, 'B')).toBe(`cand ${MARKER}`);
  });

  it('uses an injected fetch', async () => {
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    await judgePairwise([item('a', 'b')], { env: env(), fetch: counting });
    expect(calls).toBe(2);
  });
});

describe('judgePairwise counting', () => {
  it('wins when both orders prefer the candidate, loses when both prefer the baseline, else ties', async () => {
    const result = await judgePairwise(
      [item(`good ${MARKER}`, 'plain'), item('plain', `good ${MARKER}`), item(`x ${MARKER}`, `y ${MARKER}`), item('x', 'y'), item(`again ${MARKER}`, 'plain')],
      { env: env() },
    );
    expect(result.perItem.map((r) => r.outcome)).toEqual(['win', 'loss', 'tie', 'tie', 'win']);
    expect({ wins: result.wins, losses: result.losses, ties: result.ties, unparseable: result.unparseable }).toEqual({ wins: 2, losses: 1, ties: 2, unparseable: 0 });
    expect(result.winRate).toBe(2 / 5);
    const [first, second] = result.perItem[0]!.calls;
    expect(first).toEqual({ candidatePosition: 'A', reply: 'A', verdict: 'A', parsed: true, prefers: 'candidate' });
    expect(second).toEqual({ candidatePosition: 'B', reply: 'B', verdict: 'B', parsed: true, prefers: 'candidate' });
    expect(result.perItem[1]!.calls.map((c) => c.prefers)).toEqual(['baseline', 'baseline']);
  });

  it('turns a position-biased judge (always "A") into ties only', async () => {
    handler = (_s, res) => reply(res, 'A');
    const result = await judgePairwise([item(`good ${MARKER}`, 'plain'), item('plain', `good ${MARKER}`)], { env: env() });
    expect(result).toMatchObject({ wins: 0, losses: 0, ties: 2, winRate: 0, unparseable: 0 });
    expect(result.perItem[0]!.calls.map((c) => c.prefers)).toEqual(['candidate', 'baseline']);
  });

  it('counts one order preferring the candidate and the other a tie as a tie', async () => {
    let n = 0;
    handler = (_s, res) => reply(res, n++ === 0 ? 'A' : 'Tie.');
    const result = await judgePairwise([item('c', 'b')], { env: env() });
    expect(result.perItem[0]!.outcome).toBe('tie');
    expect(result.perItem[0]!.calls.map((c) => c.prefers)).toEqual(['candidate', 'tie']);
  });

  it('counts unparseable replies as ties and reports them with the reply', async () => {
    let n = 0;
    handler = (_s, res) => reply(res, n++ === 0 ? 'I cannot decide between these.' : 'B');
    const result = await judgePairwise([item('c', 'b')], { env: env() });
    expect(result).toMatchObject({ wins: 0, losses: 0, ties: 1, unparseable: 1 });
    expect(result.perItem[0]!.calls[0]).toEqual({ candidatePosition: 'A', reply: 'I cannot decide between these.', verdict: 'tie', parsed: false, prefers: 'tie' });
  });

  it('parses chatty verdicts in both orders', async () => {
    let n = 0;
    handler = (_s, res) => reply(res, n++ === 0 ? '**Answer: A**' : 'Revision B is better because it is shorter.');
    const result = await judgePairwise([item('c', 'b')], { env: env() });
    expect(result.perItem[0]!.outcome).toBe('win');
  });

  it('returns zeros for no items', async () => {
    expect(await judgePairwise([], { env: env() })).toEqual({ wins: 0, losses: 0, ties: 0, winRate: 0, unparseable: 0, perItem: [] });
    expect(seen).toHaveLength(0);
  });
});

describe('parseJudgeVerdict', () => {
  const table: [string, 'A' | 'B' | 'tie' | undefined][] = [
    ['A', 'A'],
    [' b. ', 'B'],
    ['"A"', 'A'],
    ['**Tie**', 'tie'],
    ['equal', 'tie'],
    ['Answer: B', 'B'],
    ['Verdict - tie', 'tie'],
    ['The winner is revision A.', 'A'],
    ['Revision B is better.', 'B'],
    ['A: it follows the instruction.', 'A'],
    ['B\nbecause it is concise', 'B'],
    ['Tie, both are fine', 'tie'],
    ['A better revision would be shorter.', undefined],
    ['Answer: A. Actually, answer: B', undefined],
    ['', undefined],
    ['I prefer neither', undefined],
  ];
  it.each(table)('%j → %s', (text, verdict) => {
    expect(parseJudgeVerdict(text)).toBe(verdict);
  });
});

describe('judgePairwise errors', () => {
  it('names each missing variable', async () => {
    for (const name of ['DRO_JUDGE_URL', 'DRO_JUDGE_API_KEY', 'DRO_JUDGE_MODEL']) {
      const message = await errorOf(judgePairwise([item('a', 'b')], { env: { ...env(), [name]: ' ' } }));
      expect(message).toBe(`the LLM judge needs the environment variable ${name}`);
    }
    const message = await errorOf(judgePairwise([item('a', 'b')], { env: {} }));
    expect(message).toContain('DRO_JUDGE_URL');
    expect(seen).toHaveLength(0);
  });

  it('rejects a URL that is not http(s)', async () => {
    expect(await errorOf(judgePairwise([], { env: { ...env(), DRO_JUDGE_URL: 'not a url' } }))).toBe('DRO_JUDGE_URL is not a valid URL');
    expect(await errorOf(judgePairwise([], { env: { ...env(), DRO_JUDGE_URL: 'ftp://127.0.0.1/v1' } }))).toBe('DRO_JUDGE_URL must be an http(s) URL');
  });

  it('names the URL and status of an HTTP error, without the key even when the server echoes it', async () => {
    handler = (s, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`internal error; you sent ${s.authorization ?? ''}`);
    };
    const message = await errorOf(judgePairwise([item('a', 'b')], { env: env() }));
    expect(message).toContain(`${baseUrl}/chat/completions`);
    expect(message).toContain('HTTP 500');
    expect(message).toContain('[redacted]');
    expect(message).not.toContain(KEY);
  });

  it('hides a query string and refuses user info in the URL', async () => {
    handler = (_s, res) => {
      res.writeHead(503);
      res.end();
    };
    const message = await errorOf(judgePairwise([item('a', 'b')], { env: { ...env(), DRO_JUDGE_URL: `${baseUrl}?key=${KEY}` } }));
    expect(message).toBe(`LLM judge at ${baseUrl}/chat/completions: HTTP 503: `);
    expect(seen[0]!.url).toBe(`/v1/chat/completions?key=${KEY}`);
    const withUser = baseUrl.replace('http://', `http://user:${KEY}@`);
    const refused = await errorOf(judgePairwise([item('a', 'b')], { env: { ...env(), DRO_JUDGE_URL: withUser } }));
    expect(refused).toBe('DRO_JUDGE_URL must not contain user:password@; put the key in DRO_JUDGE_API_KEY');
  });

  it('times out with the URL named', async () => {
    handler = () => {}; // never answers
    const message = await errorOf(judgePairwise([item('a', 'b')], { env: env(), timeoutMs: 200 }));
    expect(message).toBe(`LLM judge at ${baseUrl}/chat/completions: no answer within 200 ms (timeout)`);
    expect(message).not.toContain(KEY);
  });

  it('stops when the caller aborts', async () => {
    handler = () => {};
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const message = await errorOf(judgePairwise([item('a', 'b')], { env: env(), signal: controller.signal, timeoutMs: 10_000 }));
    expect(message).toBe(`LLM judge at ${baseUrl}/chat/completions: request aborted`);
  });

  it('rejects a malformed body: not JSON, or without choices[0].message.content', async () => {
    for (const body of ['this is not json', JSON.stringify({ choices: [] }), JSON.stringify({ choices: [{ message: { content: 3 } }] })]) {
      handler = (_s, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      };
      const message = await errorOf(judgePairwise([item('a', 'b')], { env: env() }));
      expect(message).toContain(`LLM judge at ${baseUrl}/chat/completions: malformed response (HTTP 200)`);
      expect(message).not.toContain(KEY);
    }
  });

  it('reports a refused connection without the key', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const message = await errorOf(judgePairwise([item('a', 'b')], { env: { ...env(), DRO_JUDGE_URL: `http://127.0.0.1:${port}/v1` } }));
    expect(message).toContain(`LLM judge at http://127.0.0.1:${port}/v1/chat/completions: request failed`);
    expect(message).not.toContain(KEY);
  });
});
