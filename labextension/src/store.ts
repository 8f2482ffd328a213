/**
 * The panel's state and the actions on it, over any backend with the REST API's shape. Polling runs
 * one request round at a time (never overlapping) and only while started, i.e. while the panel shows.
 */
import { describeError } from './http';
import {
  ICacheListing,
  ICatalogEntry,
  IDownload,
  IHardwareSummary,
  ILoadedModel,
  IServiceStatus,
  summarizeHardware
} from './model';

/** What the store needs from the server; FoundryClient is the real one. */
export interface IFoundryBackend {
  status(): Promise<IServiceStatus>;
  hardware(): Promise<unknown>;
  cache(): Promise<ICacheListing>;
  removeCached(name: string): Promise<void>;
  loaded(): Promise<ILoadedModel[]>;
  load(name: string, ttl?: number): Promise<void>;
  unload(name: string): Promise<void>;
  catalog(): Promise<ICatalogEntry[]>;
  downloads(): Promise<IDownload[]>;
  startDownload(model: string): Promise<IDownload>;
  cancelDownload(id: string): Promise<void>;
  /** `GET foundry/zip-logs`: the diagnostics zip. */
  zipLogs?(): Promise<ISavedFile>;
}

/** A file fetched for the user to keep. */
export interface ISavedFile {
  blob: Blob;
  filename: string;
}

export interface IFoundryState {
  status: IServiceStatus | null;
  hardware: IHardwareSummary | null;
  cache: ICacheListing | null;
  loaded: ILoadedModel[] | null;
  downloads: IDownload[];
  catalog: ICatalogEntry[] | null;
  /** The last failed action's message, shown until dismissed or the next action. */
  actionError: string | null;
  /** Why the last refresh failed, cleared by the next one that succeeds. */
  refreshError: string | null;
  /** Keys of the actions in flight, e.g. `load:tiny-generic-cpu:1`. */
  busy: ReadonlySet<string>;
}

export const DEFAULT_POLL_MS = 2000;

export class FoundryStore {
  constructor(readonly backend: IFoundryBackend) {}

  get state(): IFoundryState {
    return this._state;
  }

  /** Calls `listener` after every change; returns the function that unsubscribes. */
  subscribe(listener: () => void): () => void {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Everything: the rarely changing parts (status, hardware, catalog) and the live ones. */
  async refreshAll(): Promise<void> {
    const results = await Promise.allSettled([
      this.backend.status().then(status => this._set({ status })),
      this.backend.hardware().then(raw => this._set({ hardware: summarizeHardware(raw) })),
      this.backend.catalog().then(catalog => this._set({ catalog })),
      this.refresh()
    ]);
    const failed = results.find(r => r.status === 'rejected');
    if (failed && !this._state.refreshError) {
      this._set({ refreshError: describeError(failed.reason) });
    }
  }

  /** The live parts: loaded models (TTL), cache and downloads. */
  async refresh(): Promise<void> {
    try {
      const [loaded, cache, downloads] = await Promise.all([
        this.backend.loaded(),
        this.backend.cache(),
        this.backend.downloads()
      ]);
      this._set({ loaded, cache, downloads, refreshError: null });
    } catch (error) {
      this._set({ refreshError: describeError(error) });
      throw error;
    }
  }

  load(id: string): Promise<boolean> {
    return this._action(`load:${id}`, () => this.backend.load(id));
  }

  unload(id: string): Promise<boolean> {
    return this._action(`unload:${id}`, () => this.backend.unload(id));
  }

  remove(id: string): Promise<boolean> {
    return this._action(`remove:${id}`, () => this.backend.removeCached(id));
  }

  download(model: string): Promise<boolean> {
    return this._action(`download:${model}`, async () => {
      await this.backend.startDownload(model);
    });
  }

  cancelDownload(id: string): Promise<boolean> {
    return this._action(`cancel:${id}`, () => this.backend.cancelDownload(id));
  }

  /** Fetches the diagnostics zip and gives it to `save` (the browser's download). */
  zipLogs(save: (file: ISavedFile) => void): Promise<boolean> {
    return this._action('zip-logs', async () => {
      if (!this.backend.zipLogs) {
        throw new Error('This server cannot make a diagnostics zip.');
      }
      save(await this.backend.zipLogs());
    });
  }

  isBusy(key: string): boolean {
    return this._state.busy.has(key);
  }

  dismissError(): void {
    this._set({ actionError: null });
  }

  /** Poll every `intervalMs` until stopPolling(); the first round runs at once. */
  startPolling(intervalMs = DEFAULT_POLL_MS): void {
    if (this._polling) {
      return;
    }
    this._polling = true;
    const tick = async (): Promise<void> => {
      if (!this._polling) {
        return;
      }
      await this.refresh().catch(() => undefined);
      if (this._polling) {
        this._timer = setTimeout(() => void tick(), intervalMs);
      }
    };
    void tick();
  }

  stopPolling(): void {
    this._polling = false;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  get polling(): boolean {
    return this._polling;
  }

  /** Runs one action; its failure becomes `actionError`; the live state is refreshed either way. */
  private async _action(key: string, run: () => Promise<void>): Promise<boolean> {
    if (this._state.busy.has(key)) {
      return false;
    }
    this._set({ busy: new Set([...this._state.busy, key]), actionError: null });
    let ok = true;
    try {
      await run();
    } catch (error) {
      ok = false;
      this._set({ actionError: describeError(error) });
    }
    await this.refresh().catch(() => undefined);
    const busy = new Set(this._state.busy);
    busy.delete(key);
    this._set({ busy });
    return ok;
  }

  private _set(patch: Partial<IFoundryState>): void {
    this._state = { ...this._state, ...patch };
    for (const listener of [...this._listeners]) {
      listener();
    }
  }

  private _state: IFoundryState = {
    status: null,
    hardware: null,
    cache: null,
    loaded: null,
    downloads: [],
    catalog: null,
    actionError: null,
    refreshError: null,
    busy: new Set()
  };
  private _listeners = new Set<() => void>();
  private _polling = false;
  private _timer: ReturnType<typeof setTimeout> | null = null;
}
