import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  activeDownloadFor,
  catalogFacets,
  deviceLabel,
  errorMessage,
  filterCatalog,
  formatBytes,
  formatDuration,
  formatPercent,
  formatWhen,
  groupCatalog,
  ICatalogEntry,
  IDownload,
  openaiBaseUrl,
  parseCache,
  parseCatalog,
  parseDownloads,
  parseLoaded,
  parseStatus,
  summarizeHardware
} from '../src/model';

const entry = (name: string, alias: string, deviceType: string, task: string): ICatalogEntry => ({
  name,
  alias,
  version: '1',
  deviceType,
  executionProvider: deviceType === 'GPU' ? 'CUDAExecutionProvider' : 'CPUExecutionProvider',
  fileSizeMb: 100,
  task,
  license: 'MIT'
});

const CATALOG = [
  entry('Phi-3.5-mini-instruct-generic-gpu:1', 'phi-3.5-mini', 'GPU', 'chat-completion'),
  entry('Phi-3.5-mini-instruct-generic-cpu:1', 'phi-3.5-mini', 'CPU', 'chat-completion'),
  entry('qwen2.5-0.5b-instruct-generic-cpu:4', 'qwen2.5-0.5b', 'CPU', 'chat-completion, tools'),
  entry('tiny-generic-cpu:1', 'tiny', 'CPU', 'chat-completion')
];

describe('errorMessage', () => {
  it('reads the OpenAI error shape', () => {
    const body = { error: { message: "model 'x' not found", type: 'invalid_request_error', code: 'model_not_found' } };
    assert.equal(errorMessage(body, 404), "model 'x' not found");
  });

  it("reads jupyter_server's own shape", () => {
    assert.equal(errorMessage({ message: 'Forbidden', reason: null }, 403), 'Forbidden');
  });

  it('falls back to the status when the body says nothing', () => {
    assert.equal(errorMessage(null, 502, 'Bad Gateway'), 'The server answered 502 Bad Gateway.');
    assert.equal(errorMessage({ error: {} }, 500), 'The server answered 500.');
  });
});

describe('parsers', () => {
  it('accept both casings of the status', () => {
    assert.deepEqual(parseStatus({ Endpoints: ['http://h/foundry'], ModelDirPath: '/c' }), {
      endpoints: ['http://h/foundry'],
      modelDirPath: '/c'
    });
    assert.deepEqual(parseStatus({ endpoints: ['a'], modelDirPath: '/d' }).modelDirPath, '/d');
    assert.deepEqual(parseStatus('nonsense'), { endpoints: [], modelDirPath: '' });
  });

  it('read the cache listing and drop entries without an id', () => {
    const cache = parseCache({
      location: '/cache',
      models: [
        { id: 'tiny-generic-cpu:1', alias: 'tiny', device: 'CPU', sizeBytes: 2048, lastUsed: null },
        { alias: 'broken' }
      ]
    });
    assert.equal(cache.location, '/cache');
    assert.equal(cache.models.length, 1);
    assert.equal(cache.models[0].sizeBytes, 2048);
    assert.equal(cache.models[0].executionProvider, '');
  });

  it('read loaded models with missing numbers as null', () => {
    const [m] = parseLoaded({ models: [{ id: 'a:1', alias: 'a', ttlRemaining: 12.5, memoryBytes: 'lots' }] });
    assert.equal(m.ttlRemaining, 12.5);
    assert.equal(m.memoryBytes, null);
    assert.equal(m.pid, null);
  });

  it('read downloads and map an unknown state to running', () => {
    const downloads = parseDownloads({
      downloads: [
        { id: 'd1', model: 'tiny', state: 'done', percent: 100 },
        { id: 'd2', model: 'phi', state: 'queued', percent: '12.5', file: '' }
      ]
    });
    assert.deepEqual(
      downloads.map(d => [d.state, d.percent, d.file]),
      [
        ['done', 100, null],
        ['running', 12.5, null]
      ]
    );
  });

  it('read the catalog as a bare array or under "models"', () => {
    const raw = [
      { name: 'tiny-generic-cpu:1', alias: 'tiny', runtime: { deviceType: 'CPU', executionProvider: 'CPUExecutionProvider' }, fileSizeMb: 1 }
    ];
    assert.deepEqual(parseCatalog(raw), parseCatalog({ models: raw }));
    assert.equal(parseCatalog(raw)[0].deviceType, 'CPU');
    assert.equal(parseCatalog({})[0], undefined);
  });
});

describe('filterCatalog', () => {
  it('matches alias or id, case-insensitively', () => {
    const names = (f: Parameters<typeof filterCatalog>[1]) => filterCatalog(CATALOG, f).map(e => e.name);
    assert.equal(names({ text: 'PHI', device: '', task: '' }).length, 2);
    assert.deepEqual(names({ text: 'generic-gpu', device: '', task: '' }), ['Phi-3.5-mini-instruct-generic-gpu:1']);
  });

  it('filters by device and by one task of a comma list', () => {
    assert.equal(filterCatalog(CATALOG, { text: '', device: 'cpu', task: '' }).length, 3);
    assert.deepEqual(
      filterCatalog(CATALOG, { text: '', device: '', task: 'tools' }).map(e => e.alias),
      ['qwen2.5-0.5b']
    );
    assert.equal(filterCatalog(CATALOG, { text: 'phi', device: 'NPU', task: '' }).length, 0);
  });

  it('offers the distinct devices and tasks', () => {
    assert.deepEqual(catalogFacets(CATALOG), { devices: ['CPU', 'GPU'], tasks: ['chat-completion', 'tools'] });
  });
});

describe('activeDownloadFor', () => {
  const d = (id: string, model: string, state: IDownload['state']): IDownload => ({
    id,
    model,
    state,
    percent: 50,
    bytesDone: null,
    bytesTotal: null,
    speedBps: null,
    file: null,
    error: null
  });

  it('finds a running download by id or alias, never a finished one', () => {
    const tiny = CATALOG[3];
    assert.equal(activeDownloadFor(tiny, [d('1', 'tiny', 'done')]), undefined);
    assert.equal(activeDownloadFor(tiny, [d('1', 'tiny', 'done'), d('2', 'tiny', 'running')])?.id, '2');
    assert.equal(activeDownloadFor(tiny, [d('3', 'tiny-generic-cpu:1', 'running')])?.id, '3');
    assert.equal(activeDownloadFor(tiny, [d('4', 'phi-3.5-mini', 'running')]), undefined);
  });
});

describe('summarizeHardware', () => {
  it('lists providers given as a map and flattens scalar facts', () => {
    const summary = summarizeHardware({
      cpu: { name: 'Xeon', cores: 2 },
      memoryBytes: 8 * 1024 ** 3,
      gpus: [],
      providers: {
        cuda: { supported: false, device: false, usable: false },
        cpu: { supported: true, device: true, usable: true }
      }
    });
    assert.deepEqual(
      summary.providers.map(p => [p.name, p.usable]),
      [
        ['cuda', false],
        ['cpu', true]
      ]
    );
    assert.equal(summary.providers[0].detail, 'not in this build, no device');
    assert.deepEqual(summary.facts, [
      ['cpu name', 'Xeon'],
      ['cpu cores', '2'],
      ['memory', '8.00 GB'],
      ['gpus', 'none']
    ]);
  });

  it('reads the engine report: providers as a list with notes, memory in bytes', () => {
    const summary = summarizeHardware({
      cpu: { model: 'AMD EPYC', logicalCores: 2 },
      memory: { totalBytes: 2 * 1024 ** 3 },
      executionProviders: [
        { name: 'cuda', deviceType: 'GPU', supported: false, device: false, usable: false, note: 'not in this build' },
        { name: 'cpu', deviceType: 'CPU', supported: true, device: true, usable: true, note: '' }
      ],
      usableProviders: ['cpu']
    });
    assert.deepEqual(
      summary.providers.map(p => [p.name, p.usable, p.detail]),
      [
        ['cuda', false, 'not in this build'],
        ['cpu', true, 'supported, device present']
      ]
    );
    assert.deepEqual(summary.devices, ['AMD EPYC, 2 threads']);
    assert.deepEqual(summary.facts, [
      ['cpu model', 'AMD EPYC'],
      ['cpu logical cores', '2'],
      ['memory total', '2.00 GB']
    ]);
  });

  it('lists providers given as a list of names or objects', () => {
    assert.deepEqual(
      summarizeHardware({ providers: ['cpu', { name: 'cuda', usable: false }] }).providers.map(p => p.name),
      ['cpu', 'cuda']
    );
    assert.deepEqual(summarizeHardware(null), { devices: [], facts: [], providers: [] });
  });
});

describe('devices', () => {
  it('lists GPUs after the CPU, with their memory when known', () => {
    const { devices } = summarizeHardware({
      cpu: { model: 'Xeon' },
      gpus: [{ name: 'NVIDIA H100', memoryBytes: 80 * 1024 ** 3 }, 'Radeon']
    });
    assert.deepEqual(devices, ['Xeon', 'NVIDIA H100, 80.0 GB', 'Radeon']);
  });

  it('names a device and its provider once when they agree', () => {
    assert.equal(deviceLabel('CPU', 'CPUExecutionProvider'), 'CPU');
    assert.equal(deviceLabel('GPU', 'CUDAExecutionProvider'), 'GPU · CUDA');
    assert.equal(deviceLabel('', 'cuda'), 'cuda');
    assert.equal(deviceLabel('NPU', ''), 'NPU');
  });
});

describe('formatting', () => {
  it('formats bytes in powers of 1024', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1536), '1.50 KB');
    assert.equal(formatBytes(2.5 * 1024 ** 3), '2.50 GB');
    assert.equal(formatBytes(150 * 1024 ** 2), '150 MB');
    assert.equal(formatBytes(null), '–');
  });

  it('formats TTLs', () => {
    assert.equal(formatDuration(45), '45s');
    assert.equal(formatDuration(598.4), '9m 58s');
    assert.equal(formatDuration(3720), '1h 02m');
    assert.equal(formatDuration(-3), '0s');
    assert.equal(formatDuration(null), 'no expiry');
  });

  it('clamps percentages', () => {
    assert.equal(formatPercent(12.345), '12.3%');
    assert.equal(formatPercent(140), '100.0%');
    assert.equal(formatPercent(undefined), '–');
  });

  it('says when a model was last used, from epoch seconds or ISO text', () => {
    const now = Date.parse('2026-01-02T00:00:00Z');
    assert.equal(formatWhen(null, now), 'never');
    assert.equal(formatWhen(now / 1000 - 30, now), 'just now');
    assert.equal(formatWhen('2026-01-01T23:50:00Z', now), '10 min ago');
    assert.equal(formatWhen('2025-12-30T00:00:00Z', now), '3 d ago');
    assert.equal(formatWhen('yesterday-ish', now), 'yesterday-ish');
  });

  it('builds the OpenAI base URL under the server', () => {
    assert.equal(openaiBaseUrl('http://127.0.0.1:8888/lab-base/'), 'http://127.0.0.1:8888/lab-base/foundry/v1');
  });
});

describe('groupCatalog', () => {
  const ids = (groups: ReturnType<typeof groupCatalog>) =>
    groups.map(g => [g.alias, g.chosen.entry.name, g.chosen.runnable, g.others.map(o => o.entry.name)]);

  it('shows each alias once, with the variant this machine runs first', () => {
    const cpuOnly = groupCatalog(CATALOG, ['cpu'], new Set());
    assert.deepEqual(ids(cpuOnly), [
      ['phi-3.5-mini', 'Phi-3.5-mini-instruct-generic-cpu:1', true, ['Phi-3.5-mini-instruct-generic-gpu:1']],
      ['qwen2.5-0.5b', 'qwen2.5-0.5b-instruct-generic-cpu:4', true, []],
      ['tiny', 'tiny-generic-cpu:1', true, []]
    ]);
    assert.equal(cpuOnly[0].others[0].runnable, false);
    // With CUDA the server's best-first order stands: the GPU variant.
    const withCuda = groupCatalog(CATALOG, ['cuda', 'cpu'], new Set());
    assert.equal(withCuda[0].chosen.entry.name, 'Phi-3.5-mini-instruct-generic-gpu:1');
  });

  it('prefers a cached variant it can run, as the server resolves', () => {
    const cached = new Set(['Phi-3.5-mini-instruct-generic-cpu:1']);
    const groups = groupCatalog(CATALOG, ['cuda', 'cpu'], cached);
    assert.equal(groups[0].chosen.entry.name, 'Phi-3.5-mini-instruct-generic-cpu:1');
    assert.equal(groups[0].chosen.cached, true);
  });

  it('marks an alias no variant of which runs here', () => {
    const gpuOnly = [entry('Phi-4-mini-instruct-cuda-gpu:1', 'phi-4-mini', 'GPU', 'chat-completion')];
    const [group] = groupCatalog(gpuOnly, ['cpu'], new Set());
    assert.equal(group.chosen.runnable, false);
    // Before the hardware report arrives nothing is marked.
    assert.equal(groupCatalog(gpuOnly, null, new Set())[0].chosen.runnable, true);
  });

  it('never marks a remote engine\'s model: it runs on its engine', () => {
    const remote = { ...entry('gpu/meta-llama/Llama-3.1-8B-Instruct', 'llama-8b', 'remote', 'chat-completion') };
    remote.executionProvider = 'gpu';
    assert.equal(groupCatalog([remote], ['cpu'], new Set())[0].chosen.runnable, true);
  });
});
