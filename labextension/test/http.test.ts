import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { FoundryApiError, readResponse } from '../src/http';

const json = (body: unknown, status: number): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

describe('readResponse', () => {
  it('returns the JSON body of a success', async () => {
    assert.deepEqual(await readResponse(json({ models: [] }, 200)), { models: [] });
  });

  it('returns null for an empty success', async () => {
    assert.equal(await readResponse(new Response(null, { status: 204 })), null);
  });

  it("throws the server's message with the status", async () => {
    const failing = json({ error: { message: "model 'nope' not found", code: 'model_not_found' } }, 404);
    await assert.rejects(readResponse(failing), (error: unknown) => {
      assert.ok(error instanceof FoundryApiError);
      assert.equal(error.message, "model 'nope' not found");
      assert.equal(error.status, 404);
      return true;
    });
  });

  it('explains an HTML error page without showing it', async () => {
    const page = new Response('<html>502 Bad Gateway</html>', { status: 502, statusText: 'Bad Gateway' });
    await assert.rejects(readResponse(page), /^FoundryApiError: The server answered 502 Bad Gateway\.$/);
  });

  it('points at the server extension when its routes are missing', async () => {
    const page = new Response('<html>404 Not Found</html>', { status: 404, statusText: 'Not Found' });
    await assert.rejects(readResponse(page), /server extension does not answer \(404\)/);
  });

  it("keeps an OpenAI-shaped 404's own message", async () => {
    const unknown = json({ error: { message: 'Unknown route: foundry/nope' } }, 404);
    await assert.rejects(readResponse(unknown), /^FoundryApiError: Unknown route: foundry\/nope$/);
  });

  it('rejects a success that is not JSON', async () => {
    await assert.rejects(readResponse(new Response('<html></html>', { status: 200 })), /not JSON/);
  });
});
