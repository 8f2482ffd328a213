import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DOLLAR as D, escapeDollars } from '../src/markdown';

// The cases of tests/kernel/test_markdown.py: the chat and the magics show dollars alike.
const CASES: [string, string][] = [
  ['It costs $5 and $10.', `It costs ${D}5 and ${D}10.`],
  ['one $', `one ${D}`],
  ['no dollars here', 'no dollars here'],
  ['already \\$5', `already ${D}5`],
  ['a backslash \\\\$5', `a backslash \\\\${D}5`],
  ['$$E = mc^2$$ costs $3', `$$E = mc^2$$ costs ${D}3`],
  ['$$\n\\int_0^1 x\\,dx\n$$', '$$\n\\int_0^1 x\\,dx\n$$'],
  ['inline \\(a^2 + b^2\\) for $4', `inline \\(a^2 + b^2\\) for ${D}4`],
  ['display \\[x = $y\\] then $1', `display \\[x = $y\\] then ${D}1`],
  ['run `echo $HOME` for $0', `run \`echo $HOME\` for ${D}0`],
  ['``a ` $b``, $c', `\`\`a \` $b\`\`, ${D}c`],
  ['```bash\nexport A=$B\n```\nPrice: $2', `\`\`\`bash\nexport A=$B\n\`\`\`\nPrice: ${D}2`],
  ['~~~\n$x\n~~~', '~~~\n$x\n~~~'],
  ['```sh\necho $PATH', '```sh\necho $PATH'], // a code block still streaming
  ['$$ not closed yet', `${D}${D} not closed yet`]
];

describe('escapeDollars', () => {
  for (const [text, markdown] of CASES) {
    it(`escapes ${JSON.stringify(text)}`, () => {
      assert.equal(escapeDollars(text), markdown);
    });
  }
});
