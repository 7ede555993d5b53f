//! Channel queries gathered from the shards.

use super::harness::*;
use crate::core::ids::AppIdx;
use crate::core::shard::*;

#[test]
fn channel_queries_count_sockets_and_users_across_shards() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    let c = cluster.connect(1);
    cluster.join_presence(a, "presence-p", "u1");
    cluster.join_presence(b, "presence-p", "u1");
    cluster.join_presence(c, "presence-p", "u2");
    cluster.subscribe(a, "public-1");
    assert_eq!(
        cluster.stats(0, "presence-p"),
        ChannelStats {
            subscription_count: 3,
            user_count: 2
        }
    );
    let Answer::Channels(list) = cluster.query(
        1,
        Query::Channels {
            app: AppIdx(0),
            prefix: String::new(),
        },
    ) else {
        panic!()
    };
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["presence-p", "public-1"]);
    let Answer::Channels(list) = cluster.query(
        1,
        Query::Channels {
            app: AppIdx(0),
            prefix: "presence-".into(),
        },
    ) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
}

#[test]
fn query_ids_are_never_reused_even_when_queries_complete_at_once() {
    // On one shard every query completes inside the call that starts it; the shell may not
    // have collected the first answer when the second query starts.
    let mut cluster = Cluster::new(1);
    let now = cluster.now;
    let first = cluster.shards[0].start_query(
        Query::Channel {
            app: AppIdx(0),
            channel: name("a"),
        },
        now,
    );
    let second = cluster.shards[0].start_query(
        Query::Channel {
            app: AppIdx(0),
            channel: name("b"),
        },
        now,
    );
    assert_ne!(first, second);
    let answered: Vec<QueryId> = cluster.shards[0].take_answers().map(|(id, _)| id).collect();
    assert_eq!(answered, [first, second]);
}
