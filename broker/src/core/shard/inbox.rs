//! Which published events users' inboxes keep (`[apps.inbox]`): the shard decides as a
//! publish enters it and hands the writes out like audit records; the shell stores them.

use super::Shard;
use crate::core::channel::ChannelName;
use crate::core::ids::AppIdx;
use crate::core::inbox::{InboxWrite, keeps};

impl Shard {
    /// Inbox writes produced since the last call, oldest first.
    pub fn take_inbox(&mut self, out: &mut Vec<InboxWrite>) {
        out.append(&mut self.inbox);
    }

    /// Keeps an event published through this node on `channel` for the user the app's
    /// inbox patterns name, whether or not that user is connected.
    pub(super) fn keep_for_inbox(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        event: &str,
        data: &str,
    ) {
        let config = &self.state.apps.get(app).config;
        let Some(inbox) = &config.inbox else {
            return;
        };
        if let Some(write) = keeps(app, config, inbox, channel, event, data) {
            self.inbox.push(write);
        }
    }
}
