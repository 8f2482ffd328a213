import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  buildContext,
  chooseModel,
  chunkText,
  completionBody,
  readSettings,
  SseDecoder
} from '../src/inlineContext';

describe('buildContext', () => {
  it('puts the cells above before the text up to the cursor, markdown as comments', () => {
    const cells = [
      { type: 'markdown', source: 'Load the data\n\nthen plot' },
      { type: 'code', source: 'import pandas as pd\n' },
      { type: 'code', source: '   ' }
    ];
    const { prompt, suffix } = buildContext(cells, 'df = pd.', 'head()\nprint(df)');
    assert.equal(prompt, '# Load the data\n#\n# then plot\n\nimport pandas as pd\n\ndf = pd.');
    assert.equal(suffix, 'head()\nprint(df)');
  });

  it('keeps the nearest whole cells within the budget, so typing keeps the prompt start', () => {
    const cells = [
      { type: 'code', source: 'a = 1\nb = 2\nc = 3' },
      { type: 'code', source: 'x = 10' }
    ];
    const limits = { prefixChars: 20, suffixChars: 3 };
    const first = buildContext(cells, 'y =', 'abcdef', limits);
    assert.equal(first.prompt, 'x = 10\n\ny =');
    assert.equal(first.suffix, 'abc');
    const next = buildContext(cells, 'y = x + 1', '', limits);
    assert.equal(next.prompt, 'x = 10\n\ny = x + 1');
    assert.equal(buildContext(cells, 'y', '', { prefixChars: 40, suffixChars: 0 }).prompt, 'a = 1\nb = 2\nc = 3\n\nx = 10\n\ny');
  });

  it('keeps the end of a current cell longer than the budget', () => {
    const { prompt } = buildContext([{ type: 'code', source: 'z' }], '0123456789', '', {
      prefixChars: 4,
      suffixChars: 0
    });
    assert.equal(prompt, '6789');
  });
});

describe('completionBody', () => {
  it('is greedy and streamed, with a suffix only when there is one', () => {
    const body = completionBody('tiny', 'x = ', null, 16);
    assert.deepEqual(body, {
      model: 'tiny',
      prompt: 'x = ',
      max_tokens: 16,
      temperature: 0,
      stream: true,
      stop: ['\n\n\n']
    });
    assert.equal(completionBody('tiny', 'x = ', 'print(x)', 16).suffix, 'print(x)');
    assert.equal('suffix' in completionBody('tiny', 'x = ', '', 16), false);
  });
});

describe('SseDecoder', () => {
  it('splits data lines across arbitrary chunks', () => {
    const decoder = new SseDecoder();
    assert.deepEqual(decoder.push('data: {"a"'), []);
    assert.deepEqual(decoder.push(': 1}\n\n: keepalive\ndata: [DO'), ['{"a": 1}']);
    assert.deepEqual(decoder.push('NE]\r\n\r\n'), ['[DONE]']);
  });
});

describe('chunkText', () => {
  it('reads the text of a chunk and raises an error event', () => {
    assert.equal(chunkText('{"choices": [{"text": "abc", "index": 0}]}'), 'abc');
    assert.equal(chunkText('{"choices": [], "usage": {}}'), '');
    assert.throws(() => chunkText('{"error": {"message": "runner failed"}}'), /runner failed/);
  });
});

describe('chooseModel', () => {
  const models = [
    { id: 'embed:1', alias: 'embed', loaded: true, capabilities: ['embeddings'] },
    { id: 'smollm2:1', alias: 'smollm2', loaded: false, capabilities: ['chat', 'completions'] },
    { id: 'tiny:1', alias: 'tiny', loaded: true, capabilities: ['chat', 'completions', 'fim'] }
  ];
  it('takes the named model by id or alias, with its fim capability', () => {
    assert.deepEqual(chooseModel(models, 'smollm2'), { id: 'smollm2:1', fim: false });
    assert.deepEqual(chooseModel(models, 'tiny:1'), { id: 'tiny:1', fim: true });
    assert.deepEqual(chooseModel(models, 'engine/remote'), { id: 'engine/remote', fim: false });
  });
  it('else a loaded model that completes text, else a downloaded one, else none', () => {
    assert.deepEqual(chooseModel(models, ''), { id: 'tiny:1', fim: true });
    assert.deepEqual(chooseModel(models.slice(0, 2), ''), { id: 'smollm2:1', fim: false });
    assert.equal(chooseModel(models.slice(0, 1), ''), null);
  });
});

describe('readSettings', () => {
  it('fills in defaults for missing or invalid values', () => {
    assert.deepEqual(readSettings({}), { enabled: true, model: '', debounceMs: 150, maxTokens: 48 });
    assert.deepEqual(readSettings({ enabled: false, model: ' tiny ', debounceMs: -1, maxTokens: 8 }), {
      enabled: false,
      model: 'tiny',
      debounceMs: 150,
      maxTokens: 8
    });
  });
});
