/**
 * The data layer of the panel: the shapes the server answers with, and the pure functions that
 * normalise, filter and format them. Nothing here touches JupyterLab, so it is unit-tested in Node.
 */

/** `GET foundry/openai/status`: Foundry Local documents PascalCase, its SDKs read camelCase. */
export interface IServiceStatus {
  endpoints: string[];
  modelDirPath: string;
}

/** One entry of `GET foundry/cache`. */
export interface ICachedModel {
  id: string;
  alias: string;
  device: string;
  executionProvider: string;
  sizeBytes: number | null;
  path: string;
  lastUsed: string | number | null;
  /** A remote engine's model (device `remote`): the engine, its health and list latency. */
  engine?: string;
  health?: string;
  latencyMs?: number | null;
}

export interface ICacheListing {
  location: string;
  models: ICachedModel[];
}

/** One entry of `GET foundry/loaded`. */
export interface ILoadedModel {
  id: string;
  alias: string;
  executionProvider: string;
  memoryBytes: number | null;
  ttlSeconds: number | null;
  ttlRemaining: number | null;
  pid: number | null;
}

export type DownloadState = 'running' | 'done' | 'failed' | 'cancelled';

/** One entry of `GET foundry/downloads`. */
export interface IDownload {
  id: string;
  model: string;
  state: DownloadState;
  percent: number | null;
  bytesDone: number | null;
  bytesTotal: number | null;
  speedBps: number | null;
  file: string | null;
  error: string | null;
}

/** One entry of `GET foundry/foundry/list` (Foundry Local's field names). */
export interface ICatalogEntry {
  name: string;
  alias: string;
  version: string;
  deviceType: string;
  executionProvider: string;
  fileSizeMb: number | null;
  task: string;
  license: string;
}

/** A label and its value, for the hardware section. */
export type Fact = [string, string];

export interface IHardwareSummary {
  /** One line per compute device: the CPU, then each GPU or NPU. */
  devices: string[];
  facts: Fact[];
  providers: { name: string; usable: boolean; detail: string }[];
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown, fallback = ''): string {
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  return fallback;
}

function num(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return null;
}

function list(value: unknown, key: string): unknown[] {
  if (Array.isArray(value)) {
    return value;
  }
  if (isObject(value) && Array.isArray(value[key])) {
    return value[key] as unknown[];
  }
  return [];
}

/** The message of an error body `{"error": {"message"}}`, or a readable fallback. */
export function errorMessage(body: unknown, status: number, statusText = ''): string {
  if (isObject(body)) {
    const error = body.error;
    if (isObject(error) && typeof error.message === 'string' && error.message) {
      return error.message;
    }
    if (typeof error === 'string' && error) {
      return error;
    }
    // jupyter_server's own errors (e.g. 403 before our handlers run) use {"message", "reason"}.
    if (typeof body.message === 'string' && body.message) {
      return body.message;
    }
  }
  const reason = statusText ? ` ${statusText}` : '';
  return `The server answered ${status}${reason}.`;
}

export function parseStatus(raw: unknown): IServiceStatus {
  const data = isObject(raw) ? raw : {};
  const endpoints = list(data.endpoints ?? data.Endpoints, 'endpoints').map(e => str(e));
  return {
    endpoints: endpoints.filter(e => e !== ''),
    modelDirPath: str(data.modelDirPath ?? data.ModelDirPath)
  };
}

export function parseCache(raw: unknown): ICacheListing {
  const data = isObject(raw) ? raw : {};
  const models = list(data, 'models')
    .filter(isObject)
    .map(m => ({
      id: str(m.id),
      alias: str(m.alias),
      device: str(m.device),
      executionProvider: str(m.executionProvider),
      sizeBytes: num(m.sizeBytes),
      path: str(m.path),
      lastUsed: typeof m.lastUsed === 'number' || typeof m.lastUsed === 'string' ? m.lastUsed : null,
      engine: str(m.engine),
      health: str(m.health),
      latencyMs: num(m.latencyMs)
    }))
    .filter(m => m.id !== '');
  return { location: str(data.location), models };
}

export function parseLoaded(raw: unknown): ILoadedModel[] {
  return list(raw, 'models')
    .filter(isObject)
    .map(m => ({
      id: str(m.id),
      alias: str(m.alias),
      executionProvider: str(m.executionProvider),
      memoryBytes: num(m.memoryBytes),
      ttlSeconds: num(m.ttlSeconds),
      ttlRemaining: num(m.ttlRemaining),
      pid: num(m.pid)
    }))
    .filter(m => m.id !== '');
}

const STATES: DownloadState[] = ['running', 'done', 'failed', 'cancelled'];

export function parseDownload(m: Json): IDownload {
  const state = str(m.state) as DownloadState;
  return {
    id: str(m.id),
    model: str(m.model),
    state: STATES.includes(state) ? state : 'running',
    percent: num(m.percent),
    bytesDone: num(m.bytesDone),
    bytesTotal: num(m.bytesTotal),
    speedBps: num(m.speedBps),
    file: typeof m.file === 'string' && m.file ? m.file : null,
    error: typeof m.error === 'string' && m.error ? m.error : null
  };
}

export function parseDownloads(raw: unknown): IDownload[] {
  return list(raw, 'downloads')
    .filter(isObject)
    .map(parseDownload)
    .filter(d => d.id !== '');
}

/** The catalog arrives as a bare array (what Foundry's SDKs parse) or as `{"models": [...]}`. */
export function parseCatalog(raw: unknown): ICatalogEntry[] {
  return list(raw, 'models')
    .filter(isObject)
    .map(m => {
      const runtime = isObject(m.runtime) ? m.runtime : {};
      return {
        name: str(m.name ?? m.id),
        alias: str(m.alias),
        version: str(m.version),
        deviceType: str(runtime.deviceType),
        executionProvider: str(runtime.executionProvider),
        fileSizeMb: num(m.fileSizeMb),
        task: str(m.task),
        license: str(m.license)
      };
    })
    .filter(m => m.name !== '');
}

export interface ICatalogFilter {
  text: string;
  device: string;
  task: string;
}

/** Entries whose alias or id holds `text` (case-insensitive), on `device`, for `task` ('' = any). */
export function filterCatalog(entries: ICatalogEntry[], filter: ICatalogFilter): ICatalogEntry[] {
  const text = filter.text.trim().toLowerCase();
  const device = filter.device.toLowerCase();
  const task = filter.task.toLowerCase();
  return entries.filter(
    e =>
      (text === '' || e.alias.toLowerCase().includes(text) || e.name.toLowerCase().includes(text)) &&
      (device === '' || e.deviceType.toLowerCase() === device) &&
      (task === '' ||
        e.task
          .toLowerCase()
          .split(',')
          .some(t => t.trim() === task))
  );
}

/** The distinct devices and tasks of the catalog, sorted, for the filter drop-downs. */
export function catalogFacets(entries: ICatalogEntry[]): { devices: string[]; tasks: string[] } {
  const devices = new Set<string>();
  const tasks = new Set<string>();
  for (const e of entries) {
    if (e.deviceType) {
      devices.add(e.deviceType);
    }
    for (const t of e.task.split(',')) {
      if (t.trim()) {
        tasks.add(t.trim());
      }
    }
  }
  return { devices: [...devices].sort(), tasks: [...tasks].sort() };
}

/** One variant of an alias, and whether this machine can run it and has it cached. */
export interface ICatalogVariant {
  entry: ICatalogEntry;
  runnable: boolean;
  cached: boolean;
}

/** An alias with the variant this machine would use first and the others after it. */
export interface ICatalogGroup {
  alias: string;
  chosen: ICatalogVariant;
  others: ICatalogVariant[];
}

/**
 * Whether `entry`'s execution provider is among `usable` (short names); null: not known yet. A remote
 * engine's model (device `remote`, its provider the engine's name) runs on its engine, whatever this
 * machine has.
 */
export function canRun(entry: ICatalogEntry, usable: readonly string[] | null): boolean {
  if (usable === null || entry.executionProvider === '' || entry.deviceType.toLowerCase() === 'remote') {
    return true;
  }
  const provider = shortProvider(entry.executionProvider).toLowerCase();
  return usable.some(u => shortProvider(u).toLowerCase() === provider);
}

/**
 * The catalog grouped by alias (sorted), each alias's variants in the server's best-first order. The chosen variant is what the server resolves the alias to: a cached variant this machine
 * can run, else the first it can run; an alias with none keeps its first variant, marked not runnable.
 */
export function groupCatalog(
  entries: ICatalogEntry[],
  usable: readonly string[] | null,
  cachedIds: ReadonlySet<string>
): ICatalogGroup[] {
  const byAlias = new Map<string, ICatalogVariant[]>();
  for (const entry of entries) {
    const key = (entry.alias || entry.name).toLowerCase();
    const variant = { entry, runnable: canRun(entry, usable), cached: cachedIds.has(entry.name) };
    const variants = byAlias.get(key);
    if (variants) {
      variants.push(variant);
    } else {
      byAlias.set(key, [variant]);
    }
  }
  // Aliases in code-point order of their lower case, as `%foundry list` sorts them.
  const keys = [...byAlias.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return keys.map(key => {
    const variants = byAlias.get(key) ?? [];
    const chosen =
      variants.find(v => v.runnable && v.cached) ?? variants.find(v => v.runnable) ?? variants[0];
    return {
      alias: chosen.entry.alias || chosen.entry.name,
      chosen,
      others: variants.filter(v => v !== chosen)
    };
  });
}

/** The usable execution providers of a hardware summary, or null before it has arrived. */
export function usableProviders(hardware: IHardwareSummary | null): string[] | null {
  if (hardware === null || hardware.providers.length === 0) {
    return null;
  }
  return hardware.providers.filter(p => p.usable).map(p => p.name);
}

/** The download of a catalog entry that is running now, matched by id or by alias. */
export function activeDownloadFor(entry: ICatalogEntry, downloads: IDownload[]): IDownload | undefined {
  return downloads.find(
    d => d.state === 'running' && (d.model === entry.name || (entry.alias !== '' && d.model === entry.alias))
  );
}

/** Hardware reports are nested JSON; flatten the scalar facts and pick out the providers. */
export function summarizeHardware(raw: unknown): IHardwareSummary {
  const facts: Fact[] = [];
  const providers: IHardwareSummary['providers'] = [];
  if (!isObject(raw)) {
    return { devices: [], facts, providers };
  }
  const devices = describeDevices(raw);
  const providerData = raw.providers ?? raw.executionProviders ?? raw.execution_providers;
  const addProvider = (name: string, p: unknown): void => {
    if (isObject(p)) {
      const usable = p.usable === true;
      const bits: string[] = [];
      if (p.supported !== undefined) {
        bits.push(p.supported ? 'supported' : 'not in this build');
      }
      if (p.device !== undefined && p.device !== null) {
        bits.push(typeof p.device === 'boolean' ? (p.device ? 'device present' : 'no device') : str(p.device));
      }
      // The report's own note says best why a provider cannot be used.
      const detail = typeof p.note === 'string' && p.note ? p.note : bits.join(', ');
      providers.push({ name: str(p.name, name), usable, detail });
    } else {
      providers.push({ name: name || str(p), usable: p !== false, detail: '' });
    }
  };
  if (Array.isArray(providerData)) {
    providerData.forEach(p => addProvider(isObject(p) ? str(p.name) : str(p), p));
  } else if (isObject(providerData)) {
    Object.entries(providerData).forEach(([name, p]) => addProvider(name, p));
  }
  const walk = (value: unknown, label: string, depth: number): void => {
    if (value === null || value === undefined) {
      return;
    }
    if (Array.isArray(value)) {
      if (value.every(v => !isObject(v) && !Array.isArray(v))) {
        facts.push([label, value.length ? value.map(v => str(v)).join(', ') : 'none']);
      } else {
        value.forEach((v, i) => walk(v, `${label} ${i + 1}`, depth + 1));
      }
      return;
    }
    if (isObject(value)) {
      if (depth > 2) {
        return;
      }
      for (const [key, v] of Object.entries(value)) {
        walk(v, label ? `${label} ${humanize(key)}` : humanize(key), depth + 1);
      }
      return;
    }
    if (/ bytes$/.test(label) && typeof value === 'number') {
      facts.push([label.replace(/ bytes$/, ''), formatBytes(value)]);
    } else {
      facts.push([label, str(value)]);
    }
  };
  for (const [key, value] of Object.entries(raw)) {
    // The providers are listed on their own; `usableProviders` only repeats them.
    if (value !== providerData && key !== 'usableProviders') {
      walk(value, humanize(key), 0);
    }
  }
  return { devices, facts, providers };
}

function describeDevices(raw: Json): string[] {
  const devices: string[] = [];
  const cpu = raw.cpu;
  if (isObject(cpu)) {
    const name = str(cpu.model ?? cpu.name ?? cpu.brand, 'CPU');
    const threads = num(cpu.logicalCores ?? cpu.threads ?? cpu.cores);
    devices.push(threads === null ? name : `${name}, ${threads} threads`);
  } else if (typeof cpu === 'string' && cpu) {
    devices.push(cpu);
  }
  for (const key of ['gpus', 'npus']) {
    for (const device of list(raw[key], key)) {
      if (isObject(device)) {
        const memory = num(device.memoryBytes ?? device.totalMemoryBytes);
        const name = str(device.name ?? device.model, key === 'gpus' ? 'GPU' : 'NPU');
        devices.push(memory === null ? name : `${name}, ${formatBytes(memory)}`);
      } else if (str(device)) {
        devices.push(str(device));
      }
    }
  }
  return devices;
}

/** `CUDAExecutionProvider` -> `CUDA`; short names pass through. */
export function shortProvider(name: string): string {
  return name.replace(/ExecutionProvider$/, '');
}

/** "CPU" and "CPUExecutionProvider" say one thing: show it once. */
export function deviceLabel(device: string, executionProvider: string): string {
  const ep = shortProvider(executionProvider);
  if (!device || device.toLowerCase() === ep.toLowerCase()) {
    return ep || device;
  }
  return ep ? `${device} · ${ep}` : device;
}

/** `memoryBytes` -> `memory bytes`, `cpu_count` -> `cpu count`, for labels. */
export function humanize(key: string): string {
  return key
    .replace(/_/g, ' ')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase();
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 1536 -> "1.5 KB" (powers of 1024, like Foundry's `cache list`). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) {
    return '–';
  }
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

export function formatSpeed(bps: number | null | undefined): string {
  return bps === null || bps === undefined ? '–' : `${formatBytes(bps)}/s`;
}

/** Seconds left as "9m 58s", "1h 02m", "45s"; null (no TTL) as "no expiry". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return 'no expiry';
  }
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  }
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatPercent(percent: number | null | undefined): string {
  if (percent === null || percent === undefined || !Number.isFinite(percent)) {
    return '–';
  }
  return `${Math.min(100, Math.max(0, percent)).toFixed(1)}%`;
}

/** `lastUsed` comes as epoch seconds or an ISO string; show it relative to `now` (ms). */
export function formatWhen(value: string | number | null, now: number): string {
  if (value === null || value === '') {
    return 'never';
  }
  const ms = typeof value === 'number' ? value * 1000 : Date.parse(value);
  if (!Number.isFinite(ms)) {
    return String(value);
  }
  const ago = Math.round((now - ms) / 1000);
  if (ago < 60) {
    return 'just now';
  }
  if (ago < 3600) {
    return `${Math.floor(ago / 60)} min ago`;
  }
  if (ago < 86400) {
    return `${Math.floor(ago / 3600)} h ago`;
  }
  return `${Math.floor(ago / 86400)} d ago`;
}

/** The OpenAI base URL of this server, for clients: `{baseUrl}foundry/v1`. */
export function openaiBaseUrl(baseUrl: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/foundry/v1`;
}
