/**
 * Inline completion (ghost text) in notebooks, consoles and editors, from a local or remote model
 * through the server's `POST foundry/v1/completions`, streamed. The cells above and the text before
 * the cursor make the prompt; the text after it goes as `suffix` when the model fills in the middle
 * (capability `fim` in `GET foundry/v1/models`). A new keystroke aborts the running request, which
 * closes its connection, and the server stops generating.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  CompletionHandler,
  ICompletionProviderManager,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider
} from '@jupyterlab/completer';
import { URLExt } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { Widget } from '@lumino/widgets';

import { foundryIcon } from './icon';
import {
  buildContext,
  chooseModel,
  chunkText,
  completionBody,
  DEFAULT_SETTINGS,
  ICellText,
  IInlineSettings,
  IModelInfo,
  readSettings,
  SseDecoder
} from './inlineContext';

const PLUGIN_ID = 'foundry-jupyter:inline-completion';
const MODELS_TTL_MS = 15000;

/** One request's answer, read chunk by chunk. */
class Suggestion {
  private _decoder = new SseDecoder();
  private _utf8 = new TextDecoder();
  private _queue: string[] = [];
  private _done = false;
  text = '';

  constructor(
    private _reader: ReadableStreamDefaultReader<Uint8Array>,
    readonly controller: AbortController
  ) {}

  /** The next piece of text, or null at the end of the answer (or when it was aborted). */
  async next(): Promise<string | null> {
    while (!this._queue.length && !this._done) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await this._reader.read();
      } catch {
        this._done = true; // aborted by a newer keystroke
        break;
      }
      if (chunk.done) {
        this._done = true;
        break;
      }
      for (const payload of this._decoder.push(this._utf8.decode(chunk.value, { stream: true }))) {
        if (payload === '[DONE]') {
          this._done = true;
        } else {
          const text = chunkText(payload);
          if (text) {
            this._queue.push(text);
          }
        }
      }
    }
    const piece = this._queue.shift();
    if (piece === undefined) {
      return null;
    }
    this.text += piece;
    return piece;
  }

  close(): void {
    this.controller.abort();
  }
}

export class FoundryInlineProvider implements IInlineCompletionProvider {
  readonly name = 'Foundry local model';
  readonly identifier = 'foundry-jupyter:inline';
  readonly icon = foundryIcon;
  // JupyterLab's own debouncer is off: the provider waits `debounceMs` itself, abortably.
  readonly schema = {
    default: { debouncerDelay: 0, timeout: 30000, enabled: true }
  };

  settings: IInlineSettings = { ...DEFAULT_SETTINGS };
  private _current: AbortController | null = null;
  private _suggestions = new Map<string, Suggestion>();
  private _models: { at: number; list: IModelInfo[] } | null = null;
  private _counter = 0;

  constructor(private _server: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    this._current?.abort(); // the previous keystroke's request: its connection closes, the server stops
    this._suggestions.clear();
    const controller = new AbortController();
    this._current = controller;
    const empty = { items: [] };
    if (!this.settings.enabled || !(await this._pause(this.settings.debounceMs, controller.signal))) {
      return empty;
    }
    try {
      const model = chooseModel(await this._listModels(), this.settings.model);
      if (!model || controller.signal.aborted) {
        return empty;
      }
      const before = request.text.slice(0, request.offset);
      const after = request.text.slice(request.offset);
      const { prompt, suffix } = buildContext(cellsAbove(context.widget), before, after);
      if (!prompt.trim()) {
        return empty;
      }
      const body = completionBody(model.id, prompt, model.fim ? suffix : null, this.settings.maxTokens);
      const suggestion = await this._open(body, controller);
      const first = suggestion ? await suggestion.next() : null;
      if (!suggestion || first === null || controller.signal.aborted) {
        return empty;
      }
      const token = `foundry-${++this._counter}`;
      this._suggestions.set(token, suggestion);
      return { items: [{ insertText: first, isIncomplete: true, token }] };
    } catch (error) {
      if (!controller.signal.aborted) {
        console.warn('foundry-jupyter inline completion:', error);
      }
      return empty;
    }
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }, undefined, unknown> {
    const suggestion = this._suggestions.get(token);
    if (!suggestion) {
      return;
    }
    try {
      while ((await suggestion.next()) !== null) {
        yield { response: { insertText: suggestion.text } };
      }
    } catch (error) {
      yield { response: { insertText: suggestion.text, error: { message: String(error) } } };
    } finally {
      this._suggestions.delete(token);
    }
  }

  /** Waits `ms`; false when a newer keystroke came meanwhile. */
  private _pause(ms: number, signal: AbortSignal): Promise<boolean> {
    if (ms <= 0) {
      return Promise.resolve(!signal.aborted);
    }
    return new Promise(resolve => {
      const timer = setTimeout(() => resolve(!signal.aborted), ms);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
  }

  private async _listModels(): Promise<IModelInfo[]> {
    const now = Date.now();
    if (this._models && now - this._models.at < MODELS_TTL_MS) {
      return this._models.list;
    }
    const url = URLExt.join(this._server.baseUrl, 'foundry', 'v1', 'models');
    const response = await ServerConnection.makeRequest(url, {}, this._server);
    const data = response.ok ? ((await response.json()) as { data?: IModelInfo[] }) : {};
    this._models = { at: now, list: Array.isArray(data.data) ? data.data : [] };
    return this._models.list;
  }

  private async _open(body: { [key: string]: unknown }, controller: AbortController): Promise<Suggestion | null> {
    const url = URLExt.join(this._server.baseUrl, 'foundry', 'v1', 'completions');
    const init: RequestInit = {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json' },
      signal: controller.signal
    };
    const response = await ServerConnection.makeRequest(url, init, this._server);
    if (!response.ok || !response.body) {
      const text = await response.text();
      throw new Error(`v1/completions answered ${response.status}: ${text.slice(0, 300)}`);
    }
    return new Suggestion(response.body.getReader(), controller);
  }
}

/** The cells above the active one, when `widget` is a notebook. */
function cellsAbove(widget: Widget): ICellText[] {
  if (!(widget instanceof NotebookPanel)) {
    return [];
  }
  const notebook = widget.content;
  return notebook.widgets
    .slice(0, Math.max(0, notebook.activeCellIndex))
    .map(cell => ({ type: cell.model.type, source: cell.model.sharedModel.getSource() }));
}

export const inlineCompletionPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Ghost-text code completion from a local or remote model.',
  autoStart: true,
  requires: [ICompletionProviderManager],
  optional: [ISettingRegistry],
  activate: (_app: JupyterFrontEnd, manager: ICompletionProviderManager, registry: ISettingRegistry | null) => {
    const provider = new FoundryInlineProvider();
    manager.registerInlineProvider(provider);
    if (registry) {
      void registry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            provider.settings = readSettings(settings.composite);
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(error => console.warn('foundry-jupyter inline completion settings:', error));
    }
  }
};
