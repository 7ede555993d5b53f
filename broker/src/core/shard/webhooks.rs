//! Webhook events for the app backends, built only for apps that want them.

use super::Shard;
use crate::core::ids::AppIdx;
use crate::core::webhook::{WebhookEvent, WebhookKind};

impl Shard {
    /// Webhook events produced since the last call, for the webhook sender.
    pub fn take_webhooks(&mut self, out: &mut Vec<(AppIdx, WebhookEvent)>) {
        out.append(&mut self.webhooks);
    }

    /// Whether any of the app's webhook endpoints wants `kind` on `channel` (so nothing is
    /// built for apps without webhooks, or for channels their filters leave out).
    pub(super) fn wants_webhook(&self, app: AppIdx, kind: WebhookKind, channel: &str) -> bool {
        self.state
            .apps
            .get(app)
            .config
            .webhooks
            .iter()
            .any(|w| w.wants(kind, channel))
    }

    pub(super) fn webhook(&mut self, app: AppIdx, event: WebhookEvent) {
        if self.wants_webhook(app, event.kind, &event.channel) {
            self.webhooks.push((app, event));
        }
    }
}
