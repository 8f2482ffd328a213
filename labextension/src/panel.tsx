/**
 * The sidebar: service, hardware, loaded models, cache, downloads and catalog, drawn with React from
 * the store's state. Polling runs only while the panel is visible.
 */
import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import {
  bugIcon,
  Button,
  copyIcon,
  deleteIcon,
  downloadIcon,
  HTMLSelect,
  InputGroup,
  LabIcon,
  ReactWidget,
  refreshIcon,
  runIcon,
  stopIcon,
  closeIcon
} from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import * as React from 'react';

import { ChatView, FoundryChat } from './chat';
import { foundryIcon } from './icon';
import {
  activeDownloadFor,
  catalogFacets,
  deviceLabel,
  filterCatalog,
  formatBytes,
  formatDuration,
  formatPercent,
  formatSpeed,
  formatWhen,
  groupCatalog,
  ICachedModel,
  ICatalogGroup,
  ICatalogVariant,
  IDownload,
  ILoadedModel,
  shortProvider,
  usableProviders
} from './model';
import { FoundryStore, IFoundryState, ISavedFile } from './store';

export class FoundryPanel extends ReactWidget {
  constructor(
    readonly store: FoundryStore,
    readonly endpoint: string,
    readonly chat: FoundryChat | null = null
  ) {
    super();
    this.id = 'foundry-jupyter-panel';
    this.addClass('jp-FoundryPanel');
    this.title.icon = foundryIcon;
    this.title.caption = 'Foundry: local models';
    this._unsubscribe = store.subscribe(() => this.update());
  }

  /** Asks before removing a model from the cache; true when removed. */
  async confirmRemove(model: ICachedModel): Promise<boolean> {
    const answer = await showDialog({
      title: 'Remove cached model',
      body: `Remove ${model.id} (${formatBytes(model.sizeBytes)}) from ${model.path || 'the cache'}?`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
    });
    return answer.button.accept ? this.store.remove(model.id) : false;
  }

  /** The tab shown: the models and service, or the chat. */
  get tab(): PanelTab {
    return this._tab;
  }

  set tab(tab: PanelTab) {
    if (tab === this._tab) {
      return;
    }
    this._tab = tab;
    this.update();
    this._tabChanged.emit(tab);
  }

  get tabChanged(): ISignal<this, PanelTab> {
    return this._tabChanged;
  }

  dispose(): void {
    this.chat?.session.newChat();
    this.store.stopPolling();
    this._unsubscribe();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (!this._loadedOnce) {
      this._loadedOnce = true;
      void this.store.refreshAll();
    }
    this.store.startPolling();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.store.stopPolling();
  }

  protected render(): JSX.Element {
    return <PanelView panel={this} state={this.store.state} />;
  }

  private _unsubscribe: () => void;
  private _loadedOnce = false;
  private _tab: PanelTab = 'models';
  private _tabChanged = new Signal<this, PanelTab>(this);
}

export type PanelTab = 'models' | 'chat';

/** Hands a fetched file to the browser's downloads, as a link with `download` would. */
function saveFile(file: ISavedFile): void {
  const url = URL.createObjectURL(file.blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = file.filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

interface IViewProps {
  panel: FoundryPanel;
  state: IFoundryState;
}

function PanelView({ panel, state }: IViewProps): JSX.Element {
  const store = panel.store;
  const chat = panel.tab === 'chat' ? panel.chat : null;
  return (
    <div className={chat ? 'jp-FoundryPanel-body jp-mod-chat' : 'jp-FoundryPanel-body'}>
      <div className="jp-FoundryPanel-header">
        <h2>Foundry</h2>
        <span>
          <IconButton
            icon={bugIcon}
            label="Download diagnostics"
            title="Download a diagnostics zip (logs, hardware, versions, catalog, cache; tokens removed)"
            disabled={store.isBusy('zip-logs')}
            onClick={() => void store.zipLogs(saveFile)}
          />
          <IconButton icon={refreshIcon} label="Refresh" onClick={() => void store.refreshAll()} />
        </span>
      </div>
      {panel.chat && <Tabs panel={panel} />}
      {state.actionError && (
        <div className="jp-FoundryPanel-error" role="alert">
          <span className="jp-FoundryPanel-errorText">{state.actionError}</span>
          <IconButton icon={closeIcon} label="Dismiss" onClick={() => store.dismissError()} />
        </div>
      )}
      {state.refreshError && (
        <div className="jp-FoundryPanel-warning" role="status">
          Cannot refresh: {state.refreshError}
        </div>
      )}
      {chat ? (
        <ChatView
          chat={chat}
          listed={state.cache?.models ?? null}
          catalog={state.catalog}
          loaded={(state.loaded ?? []).map(m => m.id)}
        />
      ) : (
        <>
          <ServiceSection panel={panel} state={state} />
          <LoadedSection panel={panel} state={state} />
          <CachedSection panel={panel} state={state} />
          <DownloadsSection panel={panel} state={state} />
          <CatalogSection panel={panel} state={state} />
        </>
      )}
    </div>
  );
}

function Tabs({ panel }: { panel: FoundryPanel }): JSX.Element {
  const tab = (name: PanelTab, label: string) => (
    <button
      type="button"
      role="tab"
      className={panel.tab === name ? 'jp-FoundryPanel-tab jp-mod-current' : 'jp-FoundryPanel-tab'}
      aria-selected={panel.tab === name}
      onClick={() => (panel.tab = name)}
    >
      {label}
    </button>
  );
  return (
    <div className="jp-FoundryPanel-tabs" role="tablist">
      {tab('models', 'Models')}
      {tab('chat', 'Chat')}
    </div>
  );
}

function Section(props: { name: string; title: string; count?: number; children: React.ReactNode }): JSX.Element {
  return (
    <details className="jp-FoundryPanel-section" data-section={props.name} open>
      <summary>
        {props.title}
        {props.count !== undefined && <span className="jp-FoundryPanel-count">{props.count}</span>}
      </summary>
      <div className="jp-FoundryPanel-sectionBody">{props.children}</div>
    </details>
  );
}

/** A small borderless icon button, with optional text; the tooltip (`title`) defaults to `label`. */
function IconButton(props: {
  icon: LabIcon;
  label: string;
  title?: string;
  disabled?: boolean;
  onClick: () => void;
  children?: React.ReactNode;
}): JSX.Element {
  const { icon, label, title = label, disabled, onClick, children } = props;
  return (
    <Button small minimal disabled={disabled} title={title} aria-label={label} onClick={onClick}>
      <icon.react tag="span" />
      {children}
    </Button>
  );
}

function CancelDownloadButton(props: { panel: FoundryPanel; download: IDownload; name: string }): JSX.Element {
  const { panel, download, name } = props;
  return (
    <IconButton
      icon={closeIcon}
      label={`Cancel ${name}`}
      title={`Cancel the download of ${name}`}
      onClick={() => void panel.store.cancelDownload(download.id)}
    />
  );
}

/** One model's row: alias and id, its facts (`children`) below them, and its `actions` beside them. */
function ModelRow(props: {
  id: string;
  alias: string;
  actions: React.ReactNode;
  children: React.ReactNode;
  className?: string;
}): JSX.Element {
  const className = props.className ? `jp-FoundryPanel-row ${props.className}` : 'jp-FoundryPanel-row';
  return (
    <div className={className} data-model-id={props.id}>
      <div className="jp-FoundryPanel-rowMain">
        <span className="jp-FoundryPanel-alias">{props.alias || props.id}</span>
        <span className="jp-FoundryPanel-id">{props.id}</span>
        {props.children}
      </div>
      {props.actions}
    </div>
  );
}

function Empty(props: { children: React.ReactNode }): JSX.Element {
  return <div className="jp-FoundryPanel-empty">{props.children}</div>;
}

function ServiceSection({ panel, state }: IViewProps): JSX.Element {
  const hardware = state.hardware;
  const unusable = hardware ? hardware.providers.filter(p => !p.usable) : [];
  return (
    <Section name="service" title="Service">
      <div className="jp-FoundryPanel-field">
        <span className="jp-FoundryPanel-label">OpenAI endpoint</span>
        <span className="jp-FoundryPanel-copyable">
          <code className="jp-FoundryPanel-endpoint">{panel.endpoint}</code>
          <IconButton
            icon={copyIcon}
            label="Copy endpoint"
            title="Copy the endpoint URL"
            onClick={() => Clipboard.copyToSystem(panel.endpoint)}
          />
        </span>
      </div>
      <div className="jp-FoundryPanel-field">
        <span className="jp-FoundryPanel-label">Cache</span>
        <code className="jp-FoundryPanel-path">
          {state.cache?.location || state.status?.modelDirPath || '…'}
        </code>
      </div>
      {hardware && hardware.providers.length > 0 && (
        <div className="jp-FoundryPanel-field">
          <span className="jp-FoundryPanel-label">Execution providers</span>
          <span className="jp-FoundryPanel-providers">
            {hardware.providers
              .filter(p => p.usable)
              .map(p => (
                <span key={p.name} className="jp-FoundryPanel-chip jp-mod-usable" title={p.detail || 'usable'}>
                  {p.name}
                </span>
              ))}
          </span>
        </div>
      )}
      {hardware && hardware.devices.length > 0 && (
        <div className="jp-FoundryPanel-field">
          <span className="jp-FoundryPanel-label">Devices</span>
          {hardware.devices.map(d => (
            <span key={d} className="jp-FoundryPanel-device">
              {d}
            </span>
          ))}
        </div>
      )}
      {hardware && (
        <details className="jp-FoundryPanel-hardware">
          <summary>Hardware</summary>
          <table className="jp-FoundryPanel-facts">
            <tbody>
              {hardware.facts.map(([label, value]) => (
                <tr key={label}>
                  <th>{label}</th>
                  <td>{value}</td>
                </tr>
              ))}
              {unusable.length > 0 && (
                <tr
                  className="jp-mod-unusable"
                  title={unusable.map(p => `${p.name}: ${p.detail || 'not usable here'}`).join('\n')}
                >
                  <th>not usable here</th>
                  <td>{unusable.map(p => p.name).join(', ')}</td>
                </tr>
              )}
            </tbody>
          </table>
        </details>
      )}
    </Section>
  );
}

function LoadedSection({ panel, state }: IViewProps): JSX.Element {
  const loaded = state.loaded;
  return (
    <Section name="loaded" title="Loaded models" count={loaded?.length}>
      {loaded === null ? (
        <Empty>Loading…</Empty>
      ) : loaded.length === 0 ? (
        <Empty>No model is loaded. Load one from the cache below.</Empty>
      ) : (
        loaded.map(m => <LoadedRow key={m.id} model={m} panel={panel} />)
      )}
    </Section>
  );
}

function LoadedRow({ model, panel }: { model: ILoadedModel; panel: FoundryPanel }): JSX.Element {
  const store = panel.store;
  const busy = store.isBusy(`unload:${model.id}`);
  const unload = (
    <IconButton
      icon={stopIcon}
      label={`Unload ${model.id}`}
      disabled={busy}
      onClick={() => void store.unload(model.id)}
    >
      {busy ? 'Unloading…' : 'Unload'}
    </IconButton>
  );
  return (
    <ModelRow id={model.id} alias={model.alias} actions={unload}>
      <span className="jp-FoundryPanel-meta">
        {model.executionProvider && <span>{shortProvider(model.executionProvider)}</span>}
        <span title="Memory">{formatBytes(model.memoryBytes)}</span>
        <span title="Time until the model is unloaded when idle">
          TTL {formatDuration(model.ttlRemaining ?? model.ttlSeconds)}
        </span>
      </span>
    </ModelRow>
  );
}

function CachedSection({ panel, state }: IViewProps): JSX.Element {
  const cache = state.cache;
  const loadedIds = new Set((state.loaded ?? []).map(m => m.id));
  return (
    <Section name="cached" title="Cached models" count={cache?.models.length}>
      {cache === null ? (
        <Empty>Loading…</Empty>
      ) : cache.models.length === 0 ? (
        <Empty>The cache is empty. Download a model from the catalog below.</Empty>
      ) : (
        cache.models.map(m => (
          <CachedRow key={m.id} model={m} panel={panel} isLoaded={loadedIds.has(m.id)} />
        ))
      )}
    </Section>
  );
}

function CachedRow(props: { model: ICachedModel; panel: FoundryPanel; isLoaded: boolean }): JSX.Element {
  const { model, panel, isLoaded } = props;
  if (model.device === 'remote') {
    return <RemoteRow model={model} />;
  }
  const store = panel.store;
  const loading = store.isBusy(`load:${model.id}`);
  const removing = store.isBusy(`remove:${model.id}`);
  const actions = (
    <div className="jp-FoundryPanel-actions">
      <IconButton
        icon={runIcon}
        label={`Load ${model.id}`}
        title={isLoaded ? `${model.id} is loaded` : `Load ${model.id}`}
        disabled={loading || isLoaded}
        onClick={() => void store.load(model.id)}
      >
        {loading ? 'Loading…' : isLoaded ? 'Loaded' : 'Load'}
      </IconButton>
      <IconButton
        icon={deleteIcon}
        label={`Remove ${model.id}`}
        title={`Remove ${model.id} from the cache`}
        disabled={removing}
        onClick={() => void panel.confirmRemove(model)}
      />
    </div>
  );
  return (
    <ModelRow id={model.id} alias={model.alias} actions={actions}>
      <span className="jp-FoundryPanel-meta">
        <span>{formatBytes(model.sizeBytes)}</span>
        {(model.device || model.executionProvider) && (
          <span>{deviceLabel(model.device, model.executionProvider)}</span>
        )}
        <span title="Last used">{formatWhen(model.lastUsed, Date.now())}</span>
      </span>
    </ModelRow>
  );
}

function DownloadsSection({ panel, state }: IViewProps): JSX.Element | null {
  if (state.downloads.length === 0) {
    return null;
  }
  return (
    <Section name="downloads" title="Downloads" count={state.downloads.length}>
      {state.downloads.map(d => (
        <DownloadRow key={d.id} download={d} panel={panel} />
      ))}
    </Section>
  );
}

function DownloadRow({ download, panel }: { download: IDownload; panel: FoundryPanel }): JSX.Element {
  const running = download.state === 'running';
  const percent = Math.min(100, Math.max(0, download.percent ?? 0));
  return (
    <div className="jp-FoundryPanel-row jp-FoundryPanel-download" data-download-id={download.id}>
      <div className="jp-FoundryPanel-rowMain">
        <span className="jp-FoundryPanel-alias">{download.model}</span>
        {running ? (
          <>
            <progress className="jp-FoundryPanel-progress" max={100} value={percent} />
            <span className="jp-FoundryPanel-meta">
              <span>{formatPercent(download.percent)}</span>
              <span>{formatSpeed(download.speedBps)}</span>
              {download.file && <span className="jp-FoundryPanel-file">{download.file}</span>}
            </span>
          </>
        ) : (
          <span className={`jp-FoundryPanel-meta jp-mod-${download.state}`}>
            <span>{download.state}</span>
            {download.error && <span className="jp-FoundryPanel-errorText">{download.error}</span>}
          </span>
        )}
      </div>
      {running && <CancelDownloadButton panel={panel} download={download} name={download.model} />}
    </div>
  );
}

function CatalogSection({ panel, state }: IViewProps): JSX.Element {
  const [text, setText] = React.useState('');
  const [device, setDevice] = React.useState('');
  const [task, setTask] = React.useState('');
  const catalog = state.catalog;
  const facets = React.useMemo(() => catalogFacets(catalog ?? []), [catalog]);
  const cachedIds = new Set((state.cache?.models ?? []).map(m => m.id));
  const usable = usableProviders(state.hardware);
  const groups = catalog ? groupCatalog(filterCatalog(catalog, { text, device, task }), usable, cachedIds) : [];
  const aliases = catalog ? groupCatalog(catalog, usable, cachedIds).length : undefined;
  return (
    <Section name="catalog" title="Catalog" count={aliases}>
      <div className="jp-FoundryPanel-filters">
        <InputGroup
          className="jp-FoundryPanel-search"
          type="text"
          placeholder="Filter by alias or id"
          aria-label="Filter the catalog"
          value={text}
          rightIcon="ui-components:search"
          onChange={e => setText(e.target.value)}
        />
        <HTMLSelect
          aria-label="Device"
          value={device}
          onChange={e => setDevice(e.target.value)}
          options={[{ label: 'Any device', value: '' }, ...facets.devices]}
        />
        <HTMLSelect
          aria-label="Task"
          value={task}
          onChange={e => setTask(e.target.value)}
          options={[{ label: 'Any task', value: '' }, ...facets.tasks]}
        />
      </div>
      {catalog === null ? (
        <Empty>Loading…</Empty>
      ) : groups.length === 0 ? (
        <Empty>No catalog entry matches.</Empty>
      ) : (
        groups.map(g => <CatalogGroup key={g.alias} group={g} panel={panel} downloads={state.downloads} />)
      )}
    </Section>
  );
}

/** A remote engine's model: nothing to load or remove here, so its engine and health instead. */
function RemoteRow(props: { model: ICachedModel }): JSX.Element {
  const { model } = props;
  return (
    <ModelRow
      id={model.id}
      alias={model.alias}
      actions={<span className="jp-FoundryPanel-badge">{model.health || 'remote'}</span>}
    >
      <span className="jp-FoundryPanel-meta">
        <span>remote</span>
        <span title="Engine">{model.engine}</span>
        {typeof model.latencyMs === 'number' && (
          <span title="Latency of its model list">{Math.round(model.latencyMs)} ms</span>
        )}
      </span>
    </ModelRow>
  );
}

/** An alias: the variant this machine would use, the other variants behind a disclosure. */
function CatalogGroup(props: { group: ICatalogGroup; panel: FoundryPanel; downloads: IDownload[] }): JSX.Element {
  const { group, panel, downloads } = props;
  const row = (v: ICatalogVariant) => (
    <CatalogRow
      key={v.entry.name}
      variant={v}
      panel={panel}
      download={activeDownloadFor(v.entry, downloads)}
    />
  );
  const count = group.others.length;
  return (
    <div className="jp-FoundryPanel-group" data-alias={group.alias}>
      {row(group.chosen)}
      {count > 0 && (
        <details className="jp-FoundryPanel-variants">
          <summary>
            {count} other variant{count === 1 ? '' : 's'}
          </summary>
          {group.others.map(row)}
        </details>
      )}
    </div>
  );
}

function CatalogRow(props: {
  variant: ICatalogVariant;
  panel: FoundryPanel;
  download: IDownload | undefined;
}): JSX.Element {
  const { variant, panel, download } = props;
  const { entry, cached, runnable } = variant;
  const starting = panel.store.isBusy(`download:${entry.name}`);
  const size = entry.fileSizeMb === null ? null : entry.fileSizeMb * 1024 * 1024;
  const action = cached ? (
    <span className="jp-FoundryPanel-badge">cached</span>
  ) : download ? (
    <CancelDownloadButton panel={panel} download={download} name={entry.name} />
  ) : (
    <IconButton
      icon={downloadIcon}
      label={`Download ${entry.name}`}
      disabled={starting}
      onClick={() => void panel.store.download(entry.name)}
    />
  );
  return (
    <ModelRow
      id={entry.name}
      alias={entry.alias}
      actions={action}
      className={runnable ? undefined : 'jp-mod-unrunnable'}
    >
        <span className="jp-FoundryPanel-meta">
          {entry.deviceType && <span>{deviceLabel(entry.deviceType, entry.executionProvider)}</span>}
          {size !== null && <span>{formatBytes(size)}</span>}
          {entry.task && <span>{entry.task}</span>}
          {entry.license && <span>{entry.license}</span>}
        </span>
        {!runnable && (
          <span
            className="jp-FoundryPanel-unrunnable"
            title={`This machine has no usable ${shortProvider(entry.executionProvider)} provider`}
          >
            cannot run here
          </span>
        )}
        {download && (
          <span className="jp-FoundryPanel-meta">
            <progress className="jp-FoundryPanel-progress" max={100} value={download.percent ?? 0} />
            <span>{formatPercent(download.percent)}</span>
          </span>
        )}
    </ModelRow>
  );
}

export { foundryIcon };
