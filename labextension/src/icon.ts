import { LabIcon } from '@jupyterlab/ui-components';

// An anvil: the "foundry" where models are loaded. jp-icon3 makes it follow the theme.
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M3 6h13c2.8 0 5 1.6 5 3.5 0 .3-.2.5-.5.5H17c-1.4 0-2.5 1.1-2.5 2.5V14c0 1.1.9 2 2 2H18v2H6v-2h1.5c1.1 0 2-.9 2-2v-1c-3.6 0-6.5-2.5-6.5-5.5V6z"/>
</svg>`;

export const foundryIcon = new LabIcon({ name: 'foundry-jupyter:foundry', svgstr });
