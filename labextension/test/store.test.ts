import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { FoundryApiError } from '../src/http';
import { ICacheListing, ICatalogEntry, IDownload, ILoadedModel, IServiceStatus } from '../src/model';
import { FoundryStore, IFoundryBackend } from '../src/store';

/** An in-memory server: loading moves a cached model into `loaded`, errors mimic the REST API's. */
class FakeBackend implements IFoundryBackend {
  cached = ['tiny-generic-cpu:1'];
  loadedIds: string[] = [];
  downloadList: IDownload[] = [];
  calls: string[] = [];
  failLoaded = false;

  status(): Promise<IServiceStatus> {
    return Promise.resolve({ endpoints: ['http://h/foundry'], modelDirPath: '/cache' });
  }
  hardware(): Promise<unknown> {
    return Promise.resolve({ providers: { cpu: { usable: true } } });
  }
  cache(): Promise<ICacheListing> {
    this.calls.push('cache');
    const models = this.cached.map(id => ({
      id,
      alias: id.split('-')[0],
      device: 'CPU',
      executionProvider: 'CPUExecutionProvider',
      sizeBytes: 1024,
      path: `/cache/${id}`,
      lastUsed: null
    }));
    return Promise.resolve({ location: '/cache', models });
  }
  removeCached(name: string): Promise<void> {
    this.cached = this.cached.filter(id => id !== name);
    return Promise.resolve();
  }
  loaded(): Promise<ILoadedModel[]> {
    this.calls.push('loaded');
    if (this.failLoaded) {
      return Promise.reject(new FoundryApiError('The server answered 404 Not Found.', 404));
    }
    return Promise.resolve(
      this.loadedIds.map(id => ({
        id,
        alias: 'tiny',
        executionProvider: 'cpu',
        memoryBytes: 1,
        ttlSeconds: 600,
        ttlRemaining: 600,
        pid: 1
      }))
    );
  }
  load(name: string): Promise<void> {
    if (!this.cached.includes(name)) {
      return Promise.reject(new FoundryApiError(`model '${name}' is not in the cache`, 404));
    }
    this.loadedIds.push(name);
    return Promise.resolve();
  }
  unload(name: string): Promise<void> {
    this.loadedIds = this.loadedIds.filter(id => id !== name);
    return Promise.resolve();
  }
  catalog(): Promise<ICatalogEntry[]> {
    return Promise.resolve([]);
  }
  downloads(): Promise<IDownload[]> {
    return Promise.resolve(this.downloadList);
  }
  startDownload(model: string): Promise<IDownload> {
    const record: IDownload = {
      id: `d${this.downloadList.length + 1}`,
      model,
      state: 'running',
      percent: 0,
      bytesDone: 0,
      bytesTotal: null,
      speedBps: null,
      file: null,
      error: null
    };
    this.downloadList = [...this.downloadList, record];
    return Promise.resolve(record);
  }
  cancelDownload(id: string): Promise<void> {
    this.downloadList = this.downloadList.map(d => (d.id === id ? { ...d, state: 'cancelled' } : d));
    return Promise.resolve();
  }
}

describe('FoundryStore', () => {
  it('fills every part of the state on refreshAll and tells listeners', async () => {
    const store = new FoundryStore(new FakeBackend());
    let changes = 0;
    store.subscribe(() => (changes += 1));
    await store.refreshAll();
    const s = store.state;
    assert.equal(s.status?.modelDirPath, '/cache');
    assert.deepEqual(s.hardware?.providers.map(p => p.name), ['cpu']);
    assert.deepEqual(s.cache?.models.map(m => m.id), ['tiny-generic-cpu:1']);
    assert.deepEqual(s.loaded, []);
    assert.deepEqual(s.catalog, []);
    assert.equal(s.refreshError, null);
    assert.ok(changes >= 4);
  });

  it('loads and unloads, refreshing the loaded list after each action', async () => {
    const store = new FoundryStore(new FakeBackend());
    assert.equal(await store.load('tiny-generic-cpu:1'), true);
    assert.deepEqual(store.state.loaded?.map(m => m.id), ['tiny-generic-cpu:1']);
    assert.equal(await store.unload('tiny-generic-cpu:1'), true);
    assert.deepEqual(store.state.loaded, []);
    assert.equal(store.state.busy.size, 0);
  });

  it("keeps a failed action's server message until dismissed", async () => {
    const store = new FoundryStore(new FakeBackend());
    assert.equal(await store.load('nope:1'), false);
    assert.equal(store.state.actionError, "model 'nope:1' is not in the cache");
    await store.refresh();
    assert.equal(store.state.actionError, "model 'nope:1' is not in the cache");
    store.dismissError();
    assert.equal(store.state.actionError, null);
  });

  it('marks an action busy while it runs and refuses to run it twice', async () => {
    const backend = new FakeBackend();
    let release: () => void = () => undefined;
    backend.load = () => new Promise<void>(resolve => (release = resolve));
    const store = new FoundryStore(backend);
    const first = store.load('tiny-generic-cpu:1');
    assert.equal(store.isBusy('load:tiny-generic-cpu:1'), true);
    assert.equal(await store.load('tiny-generic-cpu:1'), false);
    release();
    assert.equal(await first, true);
    assert.equal(store.isBusy('load:tiny-generic-cpu:1'), false);
  });

  it('tracks downloads through start and cancel', async () => {
    const store = new FoundryStore(new FakeBackend());
    await store.download('phi-3.5-mini');
    assert.deepEqual(store.state.downloads.map(d => [d.model, d.state]), [['phi-3.5-mini', 'running']]);
    await store.cancelDownload('d1');
    assert.deepEqual(store.state.downloads.map(d => d.state), ['cancelled']);
  });

  it('removes a cached model', async () => {
    const store = new FoundryStore(new FakeBackend());
    await store.remove('tiny-generic-cpu:1');
    assert.deepEqual(store.state.cache?.models, []);
  });

  it('reports a failing refresh and clears it once the server answers', async () => {
    const backend = new FakeBackend();
    backend.failLoaded = true;
    const store = new FoundryStore(backend);
    await assert.rejects(store.refresh());
    assert.equal(store.state.refreshError, 'The server answered 404 Not Found.');
    backend.failLoaded = false;
    await store.refresh();
    assert.equal(store.state.refreshError, null);
  });

  it('polls repeatedly while started and not after stopPolling', async () => {
    const backend = new FakeBackend();
    const store = new FoundryStore(backend);
    const rounds = () => backend.calls.filter(c => c === 'loaded').length;
    store.startPolling(5);
    store.startPolling(5); // a second start does not add a second loop
    for (let i = 0; i < 200 && rounds() < 3; i++) {
      await new Promise(resolve => setTimeout(resolve, 5));
    }
    assert.ok(rounds() >= 3, `polled ${rounds()} times`);
    store.stopPolling();
    await new Promise(resolve => setTimeout(resolve, 20));
    const after = rounds();
    await new Promise(resolve => setTimeout(resolve, 30));
    assert.equal(rounds(), after);
    assert.equal(store.polling, false);
  });
});
