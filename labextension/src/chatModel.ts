/**
 * The chat tab's conversation: server-sent events from `v1/chat/completions` turned into text, and the
 * turns, the model and the stream in flight. No JupyterLab imports, so this is unit-tested in Node.
 */
import { describeError, FoundryApiError, readResponse } from './http';
import { errorMessage, ICachedModel, ICatalogEntry } from './model';

/**
 * Splits a `text/event-stream` body into the data of its events, fed in pieces as they arrive. Comment
 * lines (the server's keep-alives) and fields other than `data` are dropped; an event of several
 * `data` lines is joined with newlines, as EventSource does.
 */
export class SseDecoder {
  /** The data of each event completed by `text`. */
  push(text: string): string[] {
    this._buffer += text;
    const events: string[] = [];
    let end: number;
    while ((end = this._lineEnd()) >= 0) {
      const line = this._buffer.slice(0, end);
      const skip = this._buffer.startsWith('\r\n', end) ? 2 : 1;
      this._buffer = this._buffer.slice(end + skip);
      if (line === '') {
        if (this._data !== null) {
          events.push(this._data);
          this._data = null;
        }
      } else if (line.startsWith('data:')) {
        const value = line.slice(line.startsWith('data: ') ? 6 : 5);
        this._data = this._data === null ? value : `${this._data}\n${value}`;
      }
    }
    return events;
  }

  /** The last event, when the body ended without the blank line that closes it. */
  end(): string[] {
    return this.push('\n\n');
  }

  /** Where the first whole line ends; a lone `\r` at the end may still be half of `\r\n`. */
  private _lineEnd(): number {
    const match = /\r\n|\r(?!$)|\n/.exec(this._buffer);
    return match ? match.index : -1;
  }

  private _buffer = '';
  private _data: string | null = null;
}

/** What one chunk of a streamed chat completion adds. */
export interface IChatDelta {
  content: string;
  /** A reasoning model's thinking (`reasoning_content`), which comes before its answer. */
  reasoning: string;
  finishReason: string | null;
}

/** The server reported a failure inside the stream, in OpenAI's `{"error": {...}}` shape. */
export class ChatStreamError extends Error {
  constructor(
    message: string,
    readonly code: string
  ) {
    super(message);
    this.name = 'ChatStreamError';
  }
}

/**
 * One event's data, parsed: the first choice's text, thinking and finish reason, or the error it
 * reports. Thinking is `reasoning_content` (this server, DeepSeek, vLLM) or `reasoning` (vLLM's newer
 * name, Ollama's and OpenRouter's), so a remote engine's shows too.
 */
export function parseChunk(data: string): IChatDelta {
  let chunk: unknown;
  try {
    chunk = JSON.parse(data);
  } catch {
    throw new ChatStreamError(`The server sent an event that is not JSON: ${data.slice(0, 80)}`, '');
  }
  const body = typeof chunk === 'object' && chunk !== null ? (chunk as Record<string, unknown>) : {};
  if (body.error !== undefined && body.error !== null) {
    const error = body.error as Record<string, unknown>;
    const code = typeof error?.code === 'string' ? error.code : '';
    throw new ChatStreamError(errorMessage(body, 200), code);
  }
  const choices = Array.isArray(body.choices) ? (body.choices as Record<string, unknown>[]) : [];
  const choice = choices.find(c => typeof c === 'object' && c !== null && (c.index ?? 0) === 0);
  const delta = choice?.delta as Record<string, unknown> | undefined;
  const reasoning = delta?.reasoning_content ?? delta?.reasoning;
  return {
    content: typeof delta?.content === 'string' ? delta.content : '',
    reasoning: typeof reasoning === 'string' ? reasoning : '',
    finishReason: typeof choice?.finish_reason === 'string' ? choice.finish_reason : null
  };
}

/** `fetch`, or JupyterLab's `ServerConnection.makeRequest` with its settings bound. */
export type ChatFetch = (url: string, init: RequestInit) => Promise<Response>;

export interface IChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * POSTs a streamed chat completion and yields its deltas until `data: [DONE]`. A refused request
 * throws FoundryApiError with the server's message, an error event ChatStreamError; aborting `signal`
 * rejects with the fetch's AbortError.
 */
export async function* streamChat(
  fetch: ChatFetch,
  url: string,
  request: { model: string; messages: IChatTurn[] },
  signal: AbortSignal
): AsyncGenerator<IChatDelta> {
  const response = await fetch(url, {
    method: 'POST',
    body: JSON.stringify({ ...request, stream: true }),
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    signal
  });
  if (!response.ok) {
    await readResponse(response); // throws with the server's message
  }
  if (!response.body) {
    throw new FoundryApiError('The server answered without a body.', response.status);
  }
  const reader = response.body.getReader();
  const text = new TextDecoder();
  const events = new SseDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      const batch = done ? [...events.push(text.decode()), ...events.end()] : events.push(text.decode(value, { stream: true }));
      for (const data of batch) {
        if (data === '[DONE]') {
          return;
        }
        yield parseChunk(data);
      }
      if (done) {
        throw new ChatStreamError('The answer ended before the server said it was complete.', '');
      }
    }
  } finally {
    // Leaving early (stop, error) closes the connection: the server stops generating.
    reader.cancel().catch(() => undefined);
  }
}

export type ChatMessageState = 'streaming' | 'done' | 'stopped' | 'error';

export interface IChatMessage {
  id: number;
  role: 'user' | 'assistant';
  content: string;
  /** A reasoning model's thinking before its answer: shown, never sent back to the model. */
  reasoning: string;
  /** How long the thinking took, once it is over (the answer began, or the stream ended). */
  thinkingMs: number | null;
  /** The model that wrote an answer. */
  model: string;
  state: ChatMessageState;
  /** Why the answer failed: the server's message. */
  error: string | null;
  finishReason: string | null;
}

export interface IChatState {
  /** The model the next message goes to; '' until one is chosen. */
  model: string;
  messages: readonly IChatMessage[];
  streaming: boolean;
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}

/** One conversation with the models of `url` (`{baseUrl}foundry/v1/chat/completions`). */
export class ChatSession {
  constructor(
    readonly fetch: ChatFetch,
    readonly url: string
  ) {}

  get state(): IChatState {
    return this._state;
  }

  /** Calls `listener` after every change; returns the function that unsubscribes. */
  subscribe(listener: () => void): () => void {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  setModel(model: string): void {
    if (model !== this._state.model) {
      this._set({ model });
    }
  }

  /**
   * The turns sent with the next message: every question, and every answer that has text (a stopped
   * answer as far as it got; a failed one without text is left out). Thinking is not sent: reasoning
   * models are trained on turns without it, and their templates drop it.
   */
  history(): IChatTurn[] {
    return this._state.messages
      .filter(m => m.role === 'user' || m.content !== '')
      .map(m => ({ role: m.role, content: m.content }));
  }

  /** Asks the chosen model; resolves when the answer is complete, stopped or failed. */
  async send(text: string): Promise<void> {
    const question = text.trim();
    if (!question || this._state.streaming) {
      return;
    }
    const model = this._state.model;
    const user = this._message('user', question, model, 'done');
    this._set({ messages: [...this._state.messages, user] });
    const messages = this.history();
    const answer = this._message('assistant', '', model, 'streaming');
    this._set({ messages: [...this._state.messages, answer], streaming: true });
    const controller = new AbortController();
    this._controller = controller;
    let thinkingSince: number | null = null;
    const thought = (m: IChatMessage): Partial<IChatMessage> =>
      thinkingSince !== null && m.thinkingMs === null ? { thinkingMs: performance.now() - thinkingSince } : {};
    try {
      if (!model) {
        throw new Error('Choose a model first.');
      }
      for await (const delta of streamChat(this.fetch, this.url, { model, messages }, controller.signal)) {
        if (delta.reasoning && thinkingSince === null) {
          thinkingSince = performance.now();
        }
        this._update(answer.id, m => ({
          content: m.content + delta.content,
          reasoning: m.reasoning + delta.reasoning,
          finishReason: delta.finishReason ?? m.finishReason,
          ...(delta.content ? thought(m) : {})
        }));
      }
      this._update(answer.id, m => ({ state: 'done', ...thought(m) }));
    } catch (error) {
      if (controller.signal.aborted || isAbort(error)) {
        this._update(answer.id, m => ({ state: 'stopped', ...thought(m) }));
      } else {
        const message =
          error instanceof TypeError ? `Cannot reach the Jupyter server: ${error.message}` : describeError(error);
        this._update(answer.id, m => ({ state: 'error', error: message, ...thought(m) }));
      }
    } finally {
      if (this._controller === controller) {
        this._controller = null;
        this._set({ streaming: false });
      }
    }
  }

  /** Stops the answer being written; the text so far stays. */
  stop(): void {
    this._controller?.abort();
  }

  /** Stops any answer and starts over with no history; the model stays chosen. */
  newChat(): void {
    const controller = this._controller;
    this._controller = null;
    controller?.abort();
    this._set({ messages: [], streaming: false });
  }

  private _message(
    role: IChatMessage['role'],
    content: string,
    model: string,
    state: ChatMessageState
  ): IChatMessage {
    return {
      id: this._nextId++,
      role,
      content,
      reasoning: '',
      thinkingMs: null,
      model,
      state,
      error: null,
      finishReason: null
    };
  }

  /** Changes one message, if it is still in the conversation (new chat drops them all). */
  private _update(id: number, change: (m: IChatMessage) => Partial<IChatMessage>): void {
    if (!this._state.messages.some(m => m.id === id)) {
      return;
    }
    this._set({ messages: this._state.messages.map(m => (m.id === id ? { ...m, ...change(m) } : m)) });
  }

  private _set(patch: Partial<IChatState>): void {
    this._state = { ...this._state, ...patch };
    for (const listener of [...this._listeners]) {
      listener();
    }
  }

  private _state: IChatState = { model: '', messages: [], streaming: false };
  private _listeners = new Set<() => void>();
  private _controller: AbortController | null = null;
  private _nextId = 1;
}

/** The OpenAI chat route of this server: `{baseUrl}foundry/v1/chat/completions`. */
export function chatCompletionsUrl(baseUrl: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/foundry/v1/chat/completions`;
}

/**
 * The models a chat can go to: those listed, less the ones the catalog says do something else
 * (embedding models). A model the catalog does not know (a remote one, a registered folder) stays.
 */
export function chatModels(
  models: readonly ICachedModel[] | null,
  catalog: readonly ICatalogEntry[] | null
): ICachedModel[] | null {
  if (models === null) {
    return null;
  }
  const tasks = new Map((catalog ?? []).map(e => [e.name, e.task.toLowerCase()]));
  return models.filter(m => {
    const task = tasks.get(m.id);
    return !task || /chat|completion/.test(task);
  });
}

/** The model to offer first: the chosen one while it is still listed, else a loaded one, else the first. */
export function defaultModel(current: string, listed: readonly string[], loaded: readonly string[]): string {
  if (current && listed.includes(current)) {
    return current;
  }
  return listed.find(id => loaded.includes(id)) ?? listed[0] ?? '';
}

/** The text of a rendered code block, without the newline the Markdown renderer leaves at its end. */
export function codeOf(rendered: string): string {
  return rendered.replace(/\n$/, '');
}
