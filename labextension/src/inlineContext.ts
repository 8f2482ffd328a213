/**
 * What inline completion sends and reads, without JupyterLab imports (unit-tested in Node): the prompt
 * made of the cells above and the text around the cursor, the request body, and the server-sent
 * events of a streamed `v1/completions` answer.
 */

/** One cell above the cursor's cell, as the notebook holds it. */
export interface ICellText {
  type: string; // 'code' | 'markdown' | 'raw'
  source: string;
}

/** How much text around the cursor a request carries. */
export interface IContextLimits {
  /** Characters of notebook text before the cursor (the current cell's included). */
  prefixChars: number;
  /** Characters after the cursor (only sent to models that fill in the middle). */
  suffixChars: number;
}

export const DEFAULT_LIMITS: IContextLimits = { prefixChars: 8000, suffixChars: 2000 };

/** The settings of the `foundry-jupyter:inline-completion` plugin (schema/inline-completion.json). */
export interface IInlineSettings {
  enabled: boolean;
  model: string;
  debounceMs: number;
  maxTokens: number;
}

export const DEFAULT_SETTINGS: IInlineSettings = { enabled: true, model: '', debounceMs: 150, maxTokens: 48 };

/** Settings as JupyterLab's registry hands them over, with anything missing or wrong set to the default. */
export function readSettings(raw: { [key: string]: unknown }): IInlineSettings {
  const number = (value: unknown, fallback: number, min: number): number =>
    typeof value === 'number' && Number.isFinite(value) && value >= min ? value : fallback;
  return {
    enabled: typeof raw.enabled === 'boolean' ? raw.enabled : DEFAULT_SETTINGS.enabled,
    model: typeof raw.model === 'string' ? raw.model.trim() : DEFAULT_SETTINGS.model,
    debounceMs: number(raw.debounceMs, DEFAULT_SETTINGS.debounceMs, 0),
    maxTokens: number(raw.maxTokens, DEFAULT_SETTINGS.maxTokens, 1)
  };
}

/** A markdown or raw cell as comment lines, so the prompt reads as one code file. */
function asComment(source: string): string {
  return source
    .split('\n')
    .map(line => (line ? `# ${line}` : '#'))
    .join('\n');
}

/**
 * The prompt (cells above, nearest kept first, then the current cell up to the cursor) and the suffix
 * (the rest of the current cell), each cut to its limit. Cells above go in whole or not at all, so
 * successive keystrokes keep the same prompt start (and the server its state) until a cell drops out.
 */
export function buildContext(
  cellsAbove: ICellText[],
  before: string,
  after: string,
  limits: IContextLimits = DEFAULT_LIMITS
): { prompt: string; suffix: string } {
  const parts: string[] = [];
  let room = limits.prefixChars - before.length;
  for (let i = cellsAbove.length - 1; i >= 0 && room > 0; i--) {
    const cell = cellsAbove[i];
    const text = (cell.type === 'code' ? cell.source : asComment(cell.source)).trimEnd();
    if (!text) {
      continue;
    }
    const piece = `${text}\n\n`;
    if (piece.length > room) {
      break; // whole cells only: the prompt's start then changes only when a cell drops out
    }
    parts.unshift(piece);
    room -= piece.length;
  }
  const current = before.length > limits.prefixChars ? before.slice(before.length - limits.prefixChars) : before;
  return {
    prompt: parts.join('') + current,
    suffix: after.slice(0, limits.suffixChars)
  };
}

/** The body of `POST v1/completions` for one ghost text. */
export function completionBody(
  model: string,
  prompt: string,
  suffix: string | null,
  maxTokens: number
): { [key: string]: unknown } {
  const body: { [key: string]: unknown } = {
    model,
    prompt,
    max_tokens: maxTokens,
    temperature: 0, // greedy: the same text every time, and the server keeps the prefix's state
    stream: true,
    stop: ['\n\n\n']
  };
  if (suffix) {
    body.suffix = suffix;
  }
  return body;
}

/** Splits a server-sent event stream, fed in arbitrary pieces, into its `data:` payloads. */
export class SseDecoder {
  private _pending = '';

  /** The payloads completed by `chunk` (`[DONE]` included). */
  push(chunk: string): string[] {
    this._pending += chunk;
    const out: string[] = [];
    let end = this._pending.indexOf('\n');
    while (end >= 0) {
      const line = this._pending.slice(0, end).replace(/\r$/, '');
      this._pending = this._pending.slice(end + 1);
      if (line.startsWith('data:')) {
        out.push(line.slice(5).trimStart());
      }
      end = this._pending.indexOf('\n');
    }
    return out;
  }
}

/** The text of one streamed completion chunk; throws on an error event (the message it carries). */
export function chunkText(payload: string): string {
  const data = JSON.parse(payload) as {
    choices?: { text?: string }[];
    error?: { message?: string };
  };
  if (data.error) {
    throw new Error(data.error.message ?? 'the model failed');
  }
  return data.choices?.[0]?.text ?? '';
}

/** A model object of `GET v1/models`, as far as inline completion cares. */
export interface IModelInfo {
  id: string;
  alias?: string;
  loaded?: boolean;
  capabilities?: string[];
}

/**
 * The model to ask: the one the settings name (by id or alias; a remote `ENGINE/MODEL` is passed on
 * as named), else a loaded model that completes text, else a downloaded one. Null when there is none.
 */
export function chooseModel(
  models: IModelInfo[],
  wanted: string
): { id: string; fim: boolean } | null {
  const completes = (m: IModelInfo) => !m.capabilities || m.capabilities.includes('completions');
  const pick = wanted
    ? models.find(m => m.id === wanted || m.alias === wanted)
    : (models.find(m => m.loaded && completes(m)) ?? models.find(completes));
  if (pick) {
    return { id: pick.id, fim: pick.capabilities?.includes('fim') ?? false };
  }
  return wanted ? { id: wanted, fim: false } : null;
}
