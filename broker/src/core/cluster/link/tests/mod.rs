//! The link against a scripted Redis and a simulated clock.

mod failures;
mod harness;
mod nodes;
mod publish;
mod sync;

use std::time::Duration;

use bytes::Bytes;

use self::harness::*;
use super::{Effect, Notice};
use crate::core::cluster::resp::Value;
use crate::core::cluster::scripts::{Script, SyncReply};
use crate::core::cluster::{ClusterOut, Command, Envelope, StoredResource};
use crate::core::shard::{
    AnswerPart, ChannelStats, MeshMsg, Query, ReplyTo, ShardId, Watcher, home_shard,
    user_home_shard,
};
use crate::core::webhook::{WebhookEvent, WebhookKind};
use crate::core::wire::Frames;

const QUERY: ReplyTo = ReplyTo { shard: 1, query: 9 };

fn home(name: &str) -> ShardId {
    home_shard(APP, &channel(name), SHARDS)
}

/// The channel reports' replies among `mesh`: home shard, channel, and Redis's reply (`None`:
/// not applied, the home shard acts alone).
fn synced(mesh: &[(ShardId, MeshMsg)]) -> Vec<(ShardId, String, Option<&SyncReply>)> {
    mesh.iter()
        .filter_map(|(shard, msg)| match msg {
            MeshMsg::ClusterSynced { sync, reply } => {
                Some((*shard, sync.channel.as_str().to_owned(), reply.as_deref()))
            }
            _ => None,
        })
        .collect()
}

fn notices(effects: &[Effect]) -> Vec<&Notice> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notice(notice) => Some(notice),
            _ => None,
        })
        .collect()
}

fn disconnects(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Disconnect))
        .count()
}

fn sync(report: crate::core::cluster::ChannelSync) -> ClusterOut {
    ClusterOut::Sync(Box::new(report))
}

fn query_room() -> ClusterOut {
    ClusterOut::Query {
        reply_to: QUERY,
        query: Query::Channel {
            app: APP,
            channel: channel("room"),
        },
    }
}

fn is_unavailable_answer(mesh: &[(ShardId, MeshMsg)]) -> bool {
    matches!(
        mesh,
        [(
            1,
            MeshMsg::Answer {
                query: 9,
                part: AnswerPart::Unavailable
            }
        )]
    )
}
