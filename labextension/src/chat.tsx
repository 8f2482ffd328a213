/**
 * The panel's chat tab: a model picker, the conversation with answers rendered by JupyterLab's own
 * Markdown renderer (sanitized, as untrusted output is), and per code block a copy button and an
 * "insert below" button that puts the code into the current notebook under its active cell.
 */
import { Clipboard, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { ServerConnection } from '@jupyterlab/services';
import {
  addBelowIcon,
  addIcon,
  Button,
  copyIcon,
  HTMLSelect,
  LabIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { ChatSession, chatCompletionsUrl, chatModels, codeOf, defaultModel, IChatMessage } from './chatModel';
import { escapeDollars } from './markdown';
import { ICachedModel, ICatalogEntry } from './model';

/** What the chat tab needs from JupyterLab: the conversation, a Markdown renderer, the notebooks. */
export class FoundryChat {
  constructor(
    readonly session: ChatSession,
    readonly rendermime: IRenderMimeRegistry | null,
    readonly notebooks: INotebookTracker | null
  ) {}

  /** The model the user picks in the chat's list (not one the chat falls back to by itself). */
  get modelChosen(): ISignal<FoundryChat, string> {
    return this._modelChosen;
  }

  /** Chooses `model` for the next messages, as the user does in the list. */
  chooseModel(model: string): void {
    this.session.setModel(model);
    this._modelChosen.emit(model);
  }

  /** A chat with this server's models, through ServerConnection (token and XSRF handled there). */
  static create(
    settings: ServerConnection.ISettings,
    rendermime: IRenderMimeRegistry | null,
    notebooks: INotebookTracker | null
  ): FoundryChat {
    const fetch = (url: string, init: RequestInit) => ServerConnection.makeRequest(url, init, settings);
    return new FoundryChat(new ChatSession(fetch, chatCompletionsUrl(settings.baseUrl)), rendermime, notebooks);
  }

  /** Puts `code` into a new code cell below the active cell of the current notebook; false when none. */
  insertBelow(code: string): boolean {
    const panel = this.notebooks?.currentWidget;
    if (!panel) {
      Notification.warning('Open a notebook to insert the code into.', { autoClose: 5000 });
      return false;
    }
    const notebook = panel.content;
    NotebookActions.insertBelow(notebook);
    if (notebook.activeCell?.model.type !== 'code') {
      NotebookActions.changeCellType(notebook, 'code');
    }
    notebook.activeCell?.model.sharedModel.setSource(code);
    return true;
  }

  private _modelChosen = new Signal<FoundryChat, string>(this);
}

interface IChatViewProps {
  chat: FoundryChat;
  /** The models the panel lists (cached local models and remote engines' models); null while loading. */
  listed: readonly ICachedModel[] | null;
  /** The catalog, which says which models are not for chat (embedding models). */
  catalog: readonly ICatalogEntry[] | null;
  loaded: readonly string[];
}

export function ChatView({ chat, listed, catalog, loaded }: IChatViewProps): JSX.Element {
  const models = React.useMemo(() => chatModels(listed, catalog), [listed, catalog]);
  const session = chat.session;
  const subscribe = React.useCallback((listener: () => void) => session.subscribe(listener), [session]);
  const state = React.useSyncExternalStore(subscribe, () => session.state);
  const ids = (models ?? []).map(m => m.id);
  const choice = defaultModel(state.model, ids, loaded);
  // Not while the list loads: a model chosen before (restored from the last visit) waits for it.
  const listing = models !== null;
  React.useEffect(() => {
    if (listing) {
      session.setModel(choice);
    }
  }, [session, choice, listing]);

  const list = React.useRef<HTMLDivElement>(null);
  const content = React.useRef<HTMLDivElement>(null);
  const stuck = React.useRef(true); // follow the answer while the user has not scrolled up
  const followedTo = React.useRef(0); // where following last scrolled to
  React.useEffect(() => {
    // Answers render after React's update, so follow the content's size rather than the state.
    const [outer, inner] = [list.current, content.current];
    if (!outer || !inner) {
      return;
    }
    const follow = new ResizeObserver(() => {
      if (stuck.current) {
        outer.scrollTop = outer.scrollHeight;
        followedTo.current = outer.scrollTop;
      }
    });
    follow.observe(inner);
    return () => follow.disconnect();
  }, []);
  const onScroll = (): void => {
    const node = list.current;
    if (!node) {
      return;
    }
    // Content that grew after our own scroll is not the user leaving the bottom: only a move up is.
    if (node.scrollHeight - node.scrollTop - node.clientHeight < 24) {
      stuck.current = true;
    } else if (node.scrollTop < followedTo.current - 4) {
      stuck.current = false;
    }
  };

  return (
    <div className="jp-FoundryChat">
      <div className="jp-FoundryChat-toolbar">
        <HTMLSelect
          className="jp-FoundryChat-model"
          aria-label="Model"
          title="The model that answers"
          value={state.model}
          onChange={e => chat.chooseModel(e.target.value)}
        >
          <ModelOptions models={models} />
        </HTMLSelect>
        <Button
          small
          minimal
          title="Start a new chat (forgets this one)"
          aria-label="New chat"
          onClick={() => session.newChat()}
        >
          <addIcon.react tag="span" />
          New chat
        </Button>
      </div>
      <div className="jp-FoundryChat-messages" ref={list} onScroll={onScroll}>
        <div ref={content}>
          {state.messages.length === 0 && (
            <div className="jp-FoundryPanel-empty">
              {models === null
                ? 'Loading models…'
                : ids.length === 0
                  ? 'No model to chat with: download one from the catalog, or register a remote engine.'
                  : 'Ask a question. Code in answers can be copied or inserted below the active notebook cell.'}
            </div>
          )}
          {state.messages.map(m => (
            <MessageView key={m.id} message={m} chat={chat} />
          ))}
        </div>
      </div>
      <Composer chat={chat} streaming={state.streaming} disabled={!state.model} />
    </div>
  );
}

/** Local models first, then each remote engine's, as the Models tab lists them. */
function ModelOptions({ models }: { models: readonly ICachedModel[] | null }): JSX.Element {
  if (models === null) {
    return <option value="">Loading models…</option>;
  }
  if (models.length === 0) {
    return <option value="">No model</option>;
  }
  const local = models.filter(m => m.device !== 'remote');
  const remote = models.filter(m => m.device === 'remote');
  const option = (m: ICachedModel) => (
    <option key={m.id} value={m.id}>
      {m.id}
    </option>
  );
  return (
    <>
      {local.length > 0 && <optgroup label="Local">{local.map(option)}</optgroup>}
      {remote.length > 0 && <optgroup label="Remote engines">{remote.map(option)}</optgroup>}
    </>
  );
}

function MessageView({ message, chat }: { message: IChatMessage; chat: FoundryChat }): JSX.Element {
  const { role, content, reasoning, state, error } = message;
  return (
    <div className={`jp-FoundryChat-message jp-mod-${role}`} data-role={role} data-state={state}>
      {role === 'assistant' && <div className="jp-FoundryChat-author">{message.model}</div>}
      {reasoning !== '' && <Thinking message={message} />}
      {role === 'user' ? (
        <div className="jp-FoundryChat-text">{content}</div>
      ) : content !== '' ? (
        <Markdown text={content} chat={chat} />
      ) : state === 'streaming' && reasoning === '' ? (
        <div className="jp-FoundryChat-pending">…</div>
      ) : null}
      {state === 'stopped' && <div className="jp-FoundryChat-note">Stopped.</div>}
      {state === 'done' && message.finishReason === 'length' && (
        <div className="jp-FoundryChat-note">The answer reached its token limit.</div>
      )}
      {error && (
        <div className="jp-FoundryPanel-error jp-FoundryChat-error" role="alert">
          <span className="jp-FoundryPanel-errorText">{error}</span>
        </div>
      )}
    </div>
  );
}

/**
 * A reasoning model's thinking, folded above its answer: the summary says whether it is still going,
 * and opening it shows the text as it streams. Plain text: thinking is a draft, not formatted output.
 */
function Thinking({ message }: { message: IChatMessage }): JSX.Element {
  const { reasoning, thinkingMs, state } = message;
  const going = thinkingMs === null && state === 'streaming';
  const summary = going
    ? 'Thinking…'
    : thinkingMs === null
      ? 'Thinking'
      : `Thought for ${formatSeconds(thinkingMs)}`;
  return (
    <details className="jp-FoundryChat-thinking" data-thinking={going ? 'streaming' : 'done'}>
      <summary title="Show or hide the model's thinking (not sent back to the model)">{summary}</summary>
      <div className="jp-FoundryChat-thinkingText">{reasoning}</div>
    </details>
  );
}

function formatSeconds(ms: number): string {
  const seconds = ms / 1000;
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

/**
 * An answer rendered by JupyterLab's `text/markdown` renderer. Renders run one at a time, only the
 * latest text is rendered next, and each waits at least as long as the last one took: however long the
 * answer grows, rendering it keeps at most half of the page's time.
 */
function Markdown({ text, chat }: { text: string; chat: FoundryChat }): JSX.Element {
  const host = React.useRef<HTMLDivElement>(null);
  const view = React.useRef<RenderedMarkdown | null>(null);
  React.useEffect(() => {
    if (!host.current || !chat.rendermime) {
      return;
    }
    const rendered = new RenderedMarkdown(chat.rendermime, host.current, code => chat.insertBelow(code));
    view.current = rendered;
    return () => {
      view.current = null;
      rendered.dispose();
    };
  }, [chat]);
  React.useEffect(() => view.current?.show(text), [text]);
  if (!chat.rendermime) {
    return <div className="jp-FoundryChat-text">{text}</div>;
  }
  return <div className="jp-FoundryChat-markdown" ref={host} />;
}

const MIN_RENDER_GAP_MS = 50;

class RenderedMarkdown {
  constructor(
    rendermime: IRenderMimeRegistry,
    private readonly _host: HTMLElement,
    private readonly _insert: (code: string) => void
  ) {
    this._renderer = rendermime.createRenderer('text/markdown');
    Widget.attach(this._renderer, _host);
  }

  /** Renders `text` soon; the host is `aria-busy` until the latest text is shown. */
  show(text: string): void {
    this._next = text;
    this._host.setAttribute('aria-busy', 'true');
    if (!this._running) {
      void this._run();
    }
  }

  dispose(): void {
    this._next = null;
    this._renderer.dispose();
  }

  private async _run(): Promise<void> {
    this._running = true;
    try {
      while (this._next !== null && !this._renderer.isDisposed) {
        const text = this._next;
        this._next = null;
        const started = performance.now();
        // Untrusted: the answer's HTML goes through JupyterLab's sanitizer.
        const data = { 'text/markdown': escapeDollars(text) };
        await this._renderer.renderModel(new MimeModel({ data, trusted: false }));
        this._addCodeActions();
        if (this._next === null) {
          this._host.setAttribute('aria-busy', 'false');
        }
        const took = performance.now() - started;
        await new Promise(resolve => setTimeout(resolve, Math.max(MIN_RENDER_GAP_MS, took)));
      }
    } catch (error) {
      console.error('foundry chat: cannot render the answer', error);
    } finally {
      this._running = false;
    }
  }

  private _addCodeActions(): void {
    for (const pre of Array.from(this._renderer.node.querySelectorAll('pre'))) {
      const code = codeOf((pre.querySelector('code') ?? pre).textContent ?? '');
      const actions = document.createElement('div');
      actions.className = 'jp-FoundryChat-codeActions';
      actions.append(
        codeButton(copyIcon, 'Copy', 'Copy the code', () => Clipboard.copyToSystem(code)),
        codeButton(addBelowIcon, 'Insert below', 'Insert the code as a new cell below the active notebook cell', () =>
          this._insert(code)
        )
      );
      const block = document.createElement('div');
      block.className = 'jp-FoundryChat-code';
      pre.replaceWith(block);
      block.append(actions, pre);
    }
  }

  private _renderer: ReturnType<IRenderMimeRegistry['createRenderer']>;
  private _next: string | null = null;
  private _running = false;
}

function codeButton(icon: LabIcon, label: string, title: string, onClick: () => void): HTMLButtonElement {
  const button = document.createElement('button');
  button.className = 'jp-FoundryChat-codeButton';
  button.type = 'button';
  button.title = title;
  button.setAttribute('aria-label', label);
  button.append(icon.element({ tag: 'span' }), document.createTextNode(label));
  button.addEventListener('click', onClick);
  return button;
}

function Composer(props: { chat: FoundryChat; streaming: boolean; disabled: boolean }): JSX.Element {
  const { chat, streaming, disabled } = props;
  const [text, setText] = React.useState('');
  const send = (): void => {
    if (!text.trim() || streaming || disabled) {
      return;
    }
    void chat.session.send(text);
    setText('');
  };
  return (
    <div className="jp-FoundryChat-composer">
      <textarea
        className="jp-FoundryChat-input"
        aria-label="Message"
        placeholder="Message (Enter sends, Shift+Enter adds a line)"
        rows={3}
        value={text}
        onChange={e => setText(e.target.value)}
        onKeyDown={e => {
          if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      {streaming ? (
        <Button small title="Stop the answer" aria-label="Stop" onClick={() => chat.session.stop()}>
          <stopIcon.react tag="span" />
          Stop
        </Button>
      ) : (
        <Button small title="Send (Enter)" aria-label="Send" disabled={disabled || !text.trim()} onClick={send}>
          Send
        </Button>
      )}
    </div>
  );
}
