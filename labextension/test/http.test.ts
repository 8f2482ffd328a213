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
    const page = new Response('<html>404 Not Found</html>', { status: 404, statusText: 'Not Found' });
    await assert.rejects(readResponse(page), /The server answered 404 Not Found\./);
  });

  it('rejects a success that is not JSON', async () => {
    await assert.rejects(readResponse(new Response('<html></html>', { status: 200 })), /not JSON/);
  });
});
