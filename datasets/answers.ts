// Reading the final number out of free-form answer text, shared by the tasks' answer checks.

// One number as people write it: optional accounting parenthesis, sign (ASCII or Unicode minus), currency,
// thousands separators, decimals, exponent, percent. A sign right after a letter or digit is a dash
// ("2019-2020", "12-15"), not a minus.
const NUMBER_RE =
  /(\(\s*)?(?:(?<![\p{L}\p{N}])([-+\u2212]))?\s*[$€£]?\s*(?:(?<![\p{L}\p{N}.])([-+\u2212]))?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE]([-+]?\d+))?\s*%?\s*(\))?/gu;

/** The last number in free text, with its sign; undefined when there is none. */
export function lastNumber(text: string): number | undefined {
  let last: number | undefined;
  for (const m of text.matchAll(NUMBER_RE)) {
    const [, open, sign1, sign2, digits, exponent, close] = m;
    if (digits === undefined) continue;
    let value = Number(digits.replace(/,/g, '') + (exponent !== undefined ? `e${exponent}` : ''));
    const sign = sign1 ?? sign2;
    if (sign === '-' || sign === '\u2212') value = -value;
    if (open !== undefined && close !== undefined) value = -Math.abs(value);
    if (Number.isFinite(value)) last = value;
  }
  return last;
}
