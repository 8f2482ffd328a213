/**
 * The foundry-jupyter JupyterLab plugin: a left-sidebar panel plus command-palette commands.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ServerConnection } from '@jupyterlab/services';
import { IStateDB } from '@jupyterlab/statedb';
import { MessageLoop } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { FoundryClient } from './api';
import { FoundryChat } from './chat';
import { foundryIcon } from './icon';
import { inlineCompletionPlugin } from './inline';
import { openaiBaseUrl } from './model';
import { FoundryPanel, PanelTab } from './panel';
import { FoundryStore } from './store';

namespace CommandIDs {
  export const open = 'foundry:open';
  export const refresh = 'foundry:refresh';
  export const download = 'foundry:download';
  export const openChat = 'foundry:open-chat';
}

/** Where the workspace keeps the panel's tab and the chat's model, so a reload shows them again. */
const STATE_KEY = 'foundry-jupyter:panel';

// A type, not an interface: the state database takes JSON objects, which interfaces are not.
type SavedPanel = { tab?: PanelTab; model?: string };

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'foundry-jupyter:sidebar',
  description: 'Local models in a sidebar: service, hardware, loaded, cached, downloads, catalog and a chat.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, IRenderMimeRegistry, INotebookTracker, IStateDB],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null,
    notebooks: INotebookTracker | null,
    state: IStateDB | null
  ) => {
    const settings = ServerConnection.makeSettings();
    const store = new FoundryStore(new FoundryClient(settings));
    const chat = FoundryChat.create(settings, rendermime, notebooks);
    const panel = new FoundryPanel(store, openaiBaseUrl(settings.baseUrl), chat);
    app.shell.add(panel, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(panel, 'foundry-jupyter-panel');
    }
    if (state) {
      void remember(state, panel, chat);
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Foundry: Open Models Panel',
      icon: foundryIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.openChat, {
      label: 'Foundry: Open Chat',
      caption: 'Show the chat with local and remote models, with the cursor in its message box',
      icon: foundryIcon,
      execute: async () => {
        panel.tab = 'chat';
        app.shell.activateById(panel.id);
        // Render now, so that the message box exists to take the cursor.
        MessageLoop.sendMessage(panel, Widget.Msg.UpdateRequest);
        await panel.renderPromise;
        panel.node.querySelector<HTMLTextAreaElement>('.jp-FoundryChat-input')?.focus();
      }
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
      for (const command of [CommandIDs.open, CommandIDs.openChat, CommandIDs.refresh, CommandIDs.download]) {
        palette.addItem({ command, category: 'Foundry' });
      }
    }
  }
};

/**
 * Shows the tab and the chat model of the last visit once they are read from the workspace, then saves
 * them whenever the user changes them. The layout restorer brings back whether the panel is open.
 */
async function remember(state: IStateDB, panel: FoundryPanel, chat: FoundryChat): Promise<void> {
  let saved: SavedPanel = {};
  try {
    saved = ((await state.fetch(STATE_KEY)) as SavedPanel | undefined) ?? {};
  } catch (error) {
    console.warn('foundry: cannot read the panel state of the last visit', error);
  }
  if (typeof saved.model === 'string' && saved.model) {
    chat.session.setModel(saved.model);
  }
  if (saved.tab === 'chat' || saved.tab === 'models') {
    panel.tab = saved.tab;
  }
  const save = (): void => {
    saved = { ...saved, tab: panel.tab };
    void state.save(STATE_KEY, saved);
  };
  panel.tabChanged.connect(save);
  chat.modelChosen.connect((_, model) => {
    saved = { ...saved, model };
    save();
  });
}

export default [plugin, inlineCompletionPlugin];
