import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ChatFetch,
  ChatSession,
  ChatStreamError,
  chatCompletionsUrl,
  chatModels,
  defaultModel,
  IChatTurn,
  parseChunk,
  SseDecoder,
  streamChat
} from '../src/chatModel';

const chunk = (content: string, finish: string | null = null): string =>
  `data: ${JSON.stringify({
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content }, finish_reason: finish }]
  })}\n\n`;

interface IRequestBody {
  model: string;
  messages: IChatTurn[];
  stream: boolean;
}

/** A server under test control: each request gets a body whose pieces the test writes. */
class FakeServer {
  requests: { url: string; body: IRequestBody }[] = [];
  aborted = 0;
  private _writer: ReadableStreamDefaultController<Uint8Array> | null = null;
  private _refusal: Response | null = null;

  /** The next request is answered with `response` rather than a stream. */
  refuse(response: Response): void {
    this._refusal = response;
  }

  write(text: string): void {
    this._writer?.enqueue(new TextEncoder().encode(text));
  }

  close(): void {
    this._writer?.close();
  }

  fetch: ChatFetch = (url, init) => {
    this.requests.push({ url, body: JSON.parse(init.body as string) as IRequestBody });
    if (this._refusal) {
      const refusal = this._refusal;
      this._refusal = null;
      return Promise.resolve(refusal);
    }
    const signal = init.signal!;
    const body = new ReadableStream<Uint8Array>({
      start: controller => {
        this._writer = controller;
        // As browsers do: aborting the fetch errors its body; the server sees the connection close.
        signal.addEventListener('abort', () => {
          this.aborted += 1;
          controller.error(new DOMException('The user aborted a request.', 'AbortError'));
        });
      }
    });
    return Promise.resolve(new Response(body, { headers: { 'Content-Type': 'text/event-stream' } }));
  };
}

/** Resolves once `check()` holds, polling the event loop. */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) {
    await new Promise(resolve => setTimeout(resolve, 1));
  }
  assert.ok(check(), 'condition never held');
}

describe('SseDecoder', () => {
  it('yields the data of each event as its blank line arrives', () => {
    const sse = new SseDecoder();
    assert.deepEqual(sse.push('data: {"a":'), []);
    assert.deepEqual(sse.push('1}\n'), []);
    assert.deepEqual(sse.push('\ndata: [DONE]\n\n'), ['{"a":1}', '[DONE]']);
  });

  it('drops comments and other fields, joins multi-line data, reads CRLF and CR', () => {
    const sse = new SseDecoder();
    const events = sse.push(': keepalive 1/3\r\nevent: x\r\ndata: one\r\ndata:two\r\n\r\ndata: three\r\r\n');
    assert.deepEqual(events, ['one\ntwo', 'three']);
  });

  it('keeps a CR at the end of a piece until it knows whether LF follows', () => {
    const sse = new SseDecoder();
    assert.deepEqual(sse.push('data: x\r'), []);
    assert.deepEqual(sse.push('\n\r\n'), ['x']);
  });

  it('gives the last event of a body that ends without a blank line', () => {
    const sse = new SseDecoder();
    assert.deepEqual(sse.push('data: last'), []);
    assert.deepEqual(sse.end(), ['last']);
    assert.deepEqual(sse.end(), []);
  });
});

describe('parseChunk', () => {
  it("reads the first choice's text and finish reason", () => {
    const data = chunk('Hi', 'stop').slice(6).trim();
    assert.deepEqual(parseChunk(data), { content: 'Hi', reasoning: '', finishReason: 'stop' });
  });

  it("reads a reasoning model's thinking, by this server's name for it or by vLLM's newer one", () => {
    const delta = (d: object) => JSON.stringify({ choices: [{ index: 0, delta: d, finish_reason: null }] });
    assert.deepEqual(parseChunk(delta({ reasoning_content: 'Hmm, ' })), {
      content: '',
      reasoning: 'Hmm, ',
      finishReason: null
    });
    assert.deepEqual(parseChunk(delta({ reasoning: 'so', content: null })), {
      content: '',
      reasoning: 'so',
      finishReason: null
    });
  });

  it('reads a role-only chunk and a usage chunk as no text', () => {
    assert.deepEqual(parseChunk('{"choices":[{"index":0,"delta":{"role":"assistant"}}]}'), {
      content: '',
      reasoning: '',
      finishReason: null
    });
    assert.deepEqual(parseChunk('{"choices":[],"usage":{"total_tokens":3}}'), {
      content: '',
      reasoning: '',
      finishReason: null
    });
  });

  it("throws an error event's message and code", () => {
    const data = '{"error":{"message":"the runner died","type":"server_error","code":"runner_failed"}}';
    assert.throws(
      () => parseChunk(data),
      (error: unknown) => error instanceof ChatStreamError && error.message === 'the runner died' && error.code === 'runner_failed'
    );
  });
});

describe('streamChat', () => {
  it('sends a streamed request and yields deltas until [DONE]', async () => {
    const server = new FakeServer();
    const texts: string[] = [];
    const stream = streamChat(
      server.fetch,
      '/foundry/v1/chat/completions',
      { model: 'tiny', messages: [{ role: 'user', content: 'hi' }] },
      new AbortController().signal
    );
    const reading = (async () => {
      for await (const delta of stream) {
        texts.push(delta.content);
      }
    })();
    await until(() => server.requests.length === 1);
    server.write(chunk('Hel') + chunk('lo'));
    server.write(chunk('', 'stop') + 'data: [DONE]\n\n');
    await reading;
    assert.deepEqual(texts, ['Hel', 'lo', '']);
    assert.deepEqual(server.requests[0].body, {
      model: 'tiny',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true
    });
  });

  it('fails when the body ends without [DONE]', async () => {
    const server = new FakeServer();
    const stream = streamChat(server.fetch, '/u', { model: 'm', messages: [] }, new AbortController().signal);
    const reading = (async () => {
      for await (const delta of stream) {
        void delta;
      }
    })();
    await until(() => server.requests.length === 1);
    server.write(chunk('x'));
    server.close();
    await assert.rejects(reading, /ended before the server said it was complete/);
  });
});

describe('ChatSession', () => {
  it('streams an answer into the conversation', async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/foundry/v1/chat/completions');
    chat.setModel('tiny-generic-cpu:1');
    const sent = chat.send('  Hello?  ');
    await until(() => server.requests.length === 1);
    assert.equal(chat.state.streaming, true);
    server.write(chunk('Hi '));
    await until(() => chat.state.messages[1]?.content === 'Hi ');
    assert.equal(chat.state.messages[1].state, 'streaming');
    server.write(chunk('there', 'stop') + 'data: [DONE]\n\n');
    await sent;
    const [question, answer] = chat.state.messages;
    assert.deepEqual([question.role, question.content], ['user', 'Hello?']);
    assert.deepEqual([answer.role, answer.content, answer.state], ['assistant', 'Hi there', 'done']);
    assert.equal(answer.finishReason, 'stop');
    assert.equal(answer.model, 'tiny-generic-cpu:1');
    assert.equal(chat.state.streaming, false);
  });

  it('sends the earlier turns with the next question', async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/u');
    chat.setModel('tiny');
    const first = chat.send('one');
    await until(() => server.requests.length === 1);
    server.write(chunk('answer one') + 'data: [DONE]\n\n');
    await first;
    const second = chat.send('two');
    await until(() => server.requests.length === 2);
    assert.deepEqual(server.requests[1].body.messages, [
      { role: 'user', content: 'one' },
      { role: 'assistant', content: 'answer one' },
      { role: 'user', content: 'two' }
    ]);
    server.write('data: [DONE]\n\n');
    await second;
  });

  it('stops an answer: the request is aborted, the text so far stays', async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/u');
    chat.setModel('tiny');
    const sent = chat.send('go on');
    await until(() => server.requests.length === 1);
    server.write(chunk('partial'));
    await until(() => chat.state.messages[1]?.content === 'partial');
    chat.stop();
    await sent;
    assert.equal(server.aborted, 1);
    assert.deepEqual([chat.state.messages[1].content, chat.state.messages[1].state], ['partial', 'stopped']);
    assert.equal(chat.state.streaming, false);
    // A stopped answer is history as far as it got.
    assert.deepEqual(chat.history(), [
      { role: 'user', content: 'go on' },
      { role: 'assistant', content: 'partial' }
    ]);
  });

  it("shows the server's OpenAI-shaped refusal on the answer", async () => {
    const server = new FakeServer();
    server.refuse(
      new Response(
        JSON.stringify({ error: { message: "model 'nope' not found", type: 'invalid_request_error', code: 'model_not_found' } }),
        { status: 404, headers: { 'Content-Type': 'application/json' } }
      )
    );
    const chat = new ChatSession(server.fetch, '/u');
    chat.setModel('nope');
    await chat.send('hi');
    const answer = chat.state.messages[1];
    assert.deepEqual([answer.state, answer.error], ['error', "model 'nope' not found"]);
    // A failed answer without text is not sent again.
    assert.deepEqual(chat.history(), [{ role: 'user', content: 'hi' }]);
  });

  it('shows an error event that arrives mid-stream, after the text before it', async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/u');
    chat.setModel('tiny');
    const sent = chat.send('hi');
    await until(() => server.requests.length === 1);
    server.write(chunk('so far') + 'data: {"error":{"message":"runner crashed","code":"runner_failed"}}\n\n');
    await sent;
    const answer = chat.state.messages[1];
    assert.deepEqual([answer.content, answer.state, answer.error], ['so far', 'error', 'runner crashed']);
  });

  it('says so when no model is chosen, without a request', async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/u');
    await chat.send('hi');
    assert.equal(server.requests.length, 0);
    assert.equal(chat.state.messages[1].error, 'Choose a model first.');
  });

  it('starts a new chat: stops the answer and forgets the history', async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/u');
    chat.setModel('tiny');
    const sent = chat.send('hi');
    await until(() => server.requests.length === 1);
    chat.newChat();
    await sent;
    assert.equal(server.aborted, 1);
    assert.deepEqual(chat.state.messages, []);
    assert.equal(chat.state.streaming, false);
    assert.equal(chat.state.model, 'tiny');
  });

  it("keeps a reasoning model's thinking apart from its answer and out of the history", async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/u');
    chat.setModel('thinker');
    const thought = (text: string) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: { reasoning_content: text }, finish_reason: null }] })}\n\n`;
    const first = chat.send('why?');
    await until(() => server.requests.length === 1);
    server.write(thought('Let me '));
    await until(() => chat.state.messages[1]?.reasoning === 'Let me ');
    assert.equal(chat.state.messages[1].thinkingMs, null); // still thinking
    server.write(thought('see.'));
    await until(() => chat.state.messages[1]?.reasoning === 'Let me see.');
    server.write(chunk('Because.', 'stop'));
    await until(() => chat.state.messages[1]?.content === 'Because.');
    const thinking = chat.state.messages[1].thinkingMs;
    assert.ok(thinking !== null && thinking >= 0, 'the thinking is over once the answer begins');
    server.write('data: [DONE]\n\n');
    await first;
    assert.equal(chat.state.messages[1].thinkingMs, thinking);
    assert.deepEqual(chat.history(), [
      { role: 'user', content: 'why?' },
      { role: 'assistant', content: 'Because.' }
    ]);

    // Thinking cut short by the token limit: it is over when the stream ends; no answer to send back.
    const second = chat.send('and?');
    await until(() => server.requests.length === 2);
    server.write(thought('Well') + chunk('', 'length') + 'data: [DONE]\n\n');
    await second;
    const cut = chat.state.messages[3];
    assert.deepEqual([cut.reasoning, cut.content, cut.state], ['Well', '', 'done']);
    assert.notEqual(cut.thinkingMs, null);
    const third = chat.send('ok');
    await until(() => server.requests.length === 3);
    assert.deepEqual(server.requests[2].body.messages, [
      { role: 'user', content: 'why?' },
      { role: 'assistant', content: 'Because.' },
      { role: 'user', content: 'and?' },
      { role: 'user', content: 'ok' }
    ]);
    chat.stop();
    await third;
  });

  it('ignores empty messages and messages sent while an answer streams', async () => {
    const server = new FakeServer();
    const chat = new ChatSession(server.fetch, '/u');
    chat.setModel('tiny');
    await chat.send('   ');
    assert.equal(chat.state.messages.length, 0);
    const sent = chat.send('first');
    await until(() => server.requests.length === 1);
    await chat.send('second');
    assert.equal(chat.state.messages.length, 2);
    chat.stop();
    await sent;
  });
});

describe('helpers', () => {
  it('offers the models that chat: not the embedding ones the catalog names', () => {
    const model = (id: string, device = 'CPU') => ({
      id,
      alias: '',
      device,
      executionProvider: '',
      sizeBytes: null,
      path: '',
      lastUsed: null
    });
    const entry = (name: string, task: string) => ({
      name,
      alias: '',
      version: '1',
      deviceType: 'CPU',
      executionProvider: '',
      fileSizeMb: null,
      task,
      license: ''
    });
    const listed = [model('tiny:1'), model('minilm:1'), model('own:1'), model('gpu/llama', 'remote')];
    const catalog = [entry('tiny:1', 'chat-completion'), entry('minilm:1', 'embeddings')];
    assert.deepEqual(
      chatModels(listed, catalog)?.map(m => m.id),
      ['tiny:1', 'own:1', 'gpu/llama']
    );
    assert.deepEqual(chatModels(listed, null)?.length, 4);
    assert.equal(chatModels(null, catalog), null);
  });


  it('builds the chat URL under the base URL', () => {
    assert.equal(chatCompletionsUrl('http://h:8888/lab-base/'), 'http://h:8888/lab-base/foundry/v1/chat/completions');
  });

  it('offers the chosen model, else a loaded one, else the first', () => {
    assert.equal(defaultModel('b', ['a', 'b'], []), 'b');
    assert.equal(defaultModel('gone', ['a', 'b'], ['b']), 'b');
    assert.equal(defaultModel('', ['a', 'b'], []), 'a');
    assert.equal(defaultModel('', [], []), '');
  });
});
