/**
 * Requests to the server extension's REST API under `{baseUrl}foundry/`, through JupyterLab's
 * ServerConnection (base URL, token and XSRF cookie handled for us).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { FoundryApiError, readResponse } from './http';
import {
  ICacheListing,
  ICatalogEntry,
  IDownload,
  ILoadedModel,
  IServiceStatus,
  parseCache,
  parseCatalog,
  parseDownload,
  parseDownloads,
  parseLoaded,
  parseStatus
} from './model';
import { IFoundryBackend, ISavedFile } from './store';

export class FoundryClient implements IFoundryBackend {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  /** `GET|POST|DELETE {baseUrl}foundry/{path}` -> parsed JSON. */
  async request(path: string, init: RequestInit = {}): Promise<unknown> {
    const url = URLExt.join(this.settings.baseUrl, 'foundry', path);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      throw new FoundryApiError(`Cannot reach the Jupyter server: ${String(error)}`, 0);
    }
    return readResponse(response);
  }

  async status(): Promise<IServiceStatus> {
    return parseStatus(await this.request('openai/status'));
  }

  async hardware(): Promise<unknown> {
    return this.request('hardware');
  }

  async cache(): Promise<ICacheListing> {
    return parseCache(await this.request('cache'));
  }

  async removeCached(name: string): Promise<void> {
    await this.request(`cache/${encodeURIComponent(name)}`, { method: 'DELETE' });
  }

  async loaded(): Promise<ILoadedModel[]> {
    return parseLoaded(await this.request('loaded'));
  }

  async load(name: string, ttl?: number): Promise<void> {
    const query = ttl === undefined ? '' : `?ttl=${encodeURIComponent(String(ttl))}`;
    await this.request(`openai/load/${encodeURIComponent(name)}${query}`);
  }

  async unload(name: string): Promise<void> {
    await this.request(`openai/unload/${encodeURIComponent(name)}?force=true`);
  }

  async catalog(): Promise<ICatalogEntry[]> {
    return parseCatalog(await this.request('foundry/list'));
  }

  async downloads(): Promise<IDownload[]> {
    return parseDownloads(await this.request('downloads'));
  }

  async startDownload(model: string): Promise<IDownload> {
    const body = await this.request('downloads', {
      method: 'POST',
      body: JSON.stringify({ model }),
      headers: { 'Content-Type': 'application/json' }
    });
    return parseDownload(typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {});
  }

  async cancelDownload(id: string): Promise<void> {
    await this.request(`downloads/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  async zipLogs(): Promise<ISavedFile> {
    const url = URLExt.join(this.settings.baseUrl, 'foundry', 'zip-logs');
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, {}, this.settings);
    } catch (error) {
      throw new FoundryApiError(`Cannot reach the Jupyter server: ${String(error)}`, 0);
    }
    if (!response.ok) {
      await readResponse(response); // throws with the server's message
    }
    const disposition = response.headers.get('Content-Disposition') ?? '';
    const filename = /filename="([^"]+)"/.exec(disposition)?.[1] ?? 'foundry-logs.zip';
    return { blob: await response.blob(), filename };
  }
}
