//! Which publishes users' inboxes keep: the shard hands out a write per matching channel as the
//! publish enters it, on whichever shard the publish came in, subscribers or not.

use super::harness::*;
use crate::core::inbox::InboxWrite;
use crate::core::options::{ChannelPattern, Config, InboxConfig};

fn with_inbox(c: &mut Config) {
    c.apps[0].inbox = Some(InboxConfig {
        channels: vec![
            ChannelPattern::parse("user.{id}").unwrap(),
            ChannelPattern::parse("#server-to-user-{id}").unwrap(),
        ],
        max_per_user: 50,
        ttl: std::time::Duration::from_secs(3600),
        max_users: 10,
    });
}

impl Cluster {
    fn inbox(&mut self) -> Vec<InboxWrite> {
        let mut out = Vec::new();
        for shard in &mut self.shards {
            shard.take_inbox(&mut out);
        }
        out
    }
}

#[test]
fn a_publish_on_a_users_channel_is_kept_for_them_with_nobody_subscribed() {
    let mut cluster = Cluster::with(2, with_inbox);
    cluster.publish(1, "private-user.42", "{\"n\":1}", None);
    cluster.publish(0, "#server-to-user-7", "hi", None);
    let kept: Vec<String> = cluster
        .inbox()
        .into_iter()
        .map(|w| format!("{} {} {} {}", w.user, w.channel.as_str(), w.event, w.data))
        .collect();
    assert_eq!(
        kept,
        [
            "7 #server-to-user-7 greeting hi",
            "42 private-user.42 greeting {\"n\":1}"
        ]
    );
    assert!(cluster.inbox().is_empty(), "handed out once");
}

#[test]
fn a_subscribed_user_still_gets_the_event_live_and_in_the_inbox() {
    let mut cluster = Cluster::with(2, with_inbox);
    let client = cluster.connect(1);
    cluster.subscribe_private(client, "private-user.9");
    cluster.publish(0, "private-user.9", "x", None);
    assert_eq!(cluster.events(client), ["greeting"]);
    assert_eq!(cluster.inbox().len(), 1);
}

#[test]
fn other_channels_and_apps_without_an_inbox_keep_nothing() {
    let mut cluster = Cluster::with(2, with_inbox);
    let client = cluster.connect(0);
    cluster.subscribe(client, "group.1");
    cluster.publish(0, "group.1", "x", None);
    assert_eq!(cluster.events(client), ["greeting"]);
    cluster.publish(0, "presence-user.1", "x", None);
    assert!(cluster.inbox().is_empty());
    let mut without = Cluster::new(1);
    without.publish(0, "private-user.42", "x", None);
    assert!(without.inbox().is_empty());
}
