/**
 * The foundry-jupyter JupyterLab plugin: a left-sidebar panel plus command-palette commands.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ServerConnection } from '@jupyterlab/services';

import { FoundryClient } from './api';
import { FoundryChat } from './chat';
import { foundryIcon } from './icon';
import { inlineCompletionPlugin } from './inline';
import { openaiBaseUrl } from './model';
import { FoundryPanel } from './panel';
import { FoundryStore } from './store';

namespace CommandIDs {
  export const open = 'foundry:open';
  export const refresh = 'foundry:refresh';
  export const download = 'foundry:download';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'foundry-jupyter:sidebar',
  description: 'Local models in a sidebar: service, hardware, loaded, cached, downloads, catalog and a chat.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, IRenderMimeRegistry, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null,
    notebooks: INotebookTracker | null
  ) => {
    const settings = ServerConnection.makeSettings();
    const store = new FoundryStore(new FoundryClient(settings));
    const chat = FoundryChat.create(settings, rendermime, notebooks);
    const panel = new FoundryPanel(store, openaiBaseUrl(settings.baseUrl), chat);
    app.shell.add(panel, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(panel, 'foundry-jupyter-panel');
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Foundry: Open Models Panel',
      icon: foundryIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Foundry: Refresh Models Panel',
      execute: () => store.refreshAll()
    });
    app.commands.addCommand(CommandIDs.download, {
      label: 'Foundry: Download Model by Alias…',
      execute: async args => {
        let model = typeof args.alias === 'string' ? args.alias.trim() : '';
        if (!model) {
          const answer = await InputDialog.getText({
            title: 'Download a model',
            label: 'Alias or model id (e.g. phi-3.5-mini)',
            placeholder: 'alias'
          });
          model = answer.value?.trim() ?? '';
          if (!answer.button.accept || !model) {
            return;
          }
        }
        app.shell.activateById(panel.id);
        await store.download(model);
      }
    });
    if (palette) {
      for (const command of [CommandIDs.open, CommandIDs.refresh, CommandIDs.download]) {
        palette.addItem({ command, category: 'Foundry' });
      }
    }
  }
};

export default [plugin, inlineCompletionPlugin];
