/**
 * Model answers as Markdown that JupyterLab will not turn into math by accident: the rule of
 * `foundry_jupyter.kernel.markdown`, for the chat tab. JupyterLab typesets `$...$` as LaTeX, so "$5 and
 * $10" would show as italic math; each single dollar becomes `<span>\$</span>` (escaped for Markdown,
 * and alone in its element for MathJax, which does not pair delimiters across elements). Math the model
 * clearly writes as math (`$$...$$`, `\(...\)`, `\[...\]`) and code (fenced blocks, code spans) stay.
 */

export const DOLLAR = '<span>\\$</span>';

// Spans kept as written, tried left to right. An unclosed fence runs to the end (an answer still
// streaming); an unclosed code span or `$$` is not a span yet, so its dollars are escaped for now.
const KEPT = new RegExp(
  [
    // a fenced code block: its opening line, then up to its closing fence or the end
    '^ {0,3}(?<fence>`{3,}|~{3,})[^\\n]*(?:\\n|(?![^]))(?:[^]*?^ {0,3}\\k<fence>[`~]*[ \\t]*$|[^]*)',
    // a code span
    '(?<ticks>`+)[^`][^]*?(?<!`)\\k<ticks>(?!`)',
    // display math, inline math \( \), display math \[ \]
    '(?<!\\\\)\\$\\$[^]+?(?<!\\\\)\\$\\$',
    '\\\\\\([^]+?\\\\\\)',
    '\\\\\\[[^]+?\\\\\\]'
  ].join('|'),
  'gm'
);
// A dollar, escaped or not: group 1 keeps the backslashes before it that escape each other.
const LONE_DOLLAR = /(?<!\\)((?:\\\\)*)\\?\$/g;

function escapeLone(text: string): string {
  return text.replace(LONE_DOLLAR, (_, backslashes: string) => backslashes + DOLLAR);
}

/** `text` with every dollar outside math and code escaped for Markdown. */
export function escapeDollars(text: string): string {
  if (!text.includes('$')) {
    return text;
  }
  const out: string[] = [];
  let start = 0;
  for (const kept of text.matchAll(KEPT)) {
    out.push(escapeLone(text.slice(start, kept.index)), kept[0]);
    start = kept.index + kept[0].length;
  }
  out.push(escapeLone(text.slice(start)));
  return out.join('');
}
