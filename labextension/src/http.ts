/**
 * Turning fetch responses into JSON or into errors that carry the server's message. No JupyterLab
 * imports here, so this is unit-tested in Node with its own Response class.
 */
import { errorMessage } from './model';

/** A failed request, carrying the server's own error message. */
export class FoundryApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'FoundryApiError';
  }
}

/** The body of a response as JSON, or throws FoundryApiError with the server's message. */
export async function readResponse(response: Response): Promise<unknown> {
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    // Our routes always answer JSON, even for unknown paths: an HTML 404 means they are not there.
    const message =
      body === null && response.status === 404
        ? 'The foundry_jupyter server extension does not answer (404): is it enabled? ' +
          'See `jupyter server extension list`.'
        : errorMessage(body, response.status, response.statusText);
    throw new FoundryApiError(message, response.status);
  }
  if (text && body === null) {
    throw new FoundryApiError('The server answered with something that is not JSON.', response.status);
  }
  return body;
}

/** What to show for anything thrown by a request or an action. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}
