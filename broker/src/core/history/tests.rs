use std::time::{Duration, Instant};

use super::*;
use crate::core::wire::{Event, Wires};

fn options() -> HistoryOptions {
    HistoryOptions::compile(&HistoryConfig {
        channels: vec!["private-chat.{id}".into(), "orders.**".into()],
        ..HistoryConfig::default()
    })
    .unwrap()
}

fn name(raw: &str) -> ChannelName {
    ChannelName::parse(raw, 200).unwrap()
}

fn frames(channel: &ChannelName, event: &str, data: &str) -> Frames {
    Frames::encode(
        &Event::Channel {
            event,
            channel,
            data,
        },
        Wires::PUSHER,
    )
}

fn record(history: &mut AppHistory, channel: &ChannelName, data: &str) -> u64 {
    let mut evicted = Evicted::default();
    let frames = frames(channel, "said", data);
    history
        .record(&options(), usize::MAX, channel, 1_000, frames, &mut evicted)
        .map(|e| e.id)
        .unwrap()
}

#[test]
fn patterns_cover_whole_names_with_their_kind_prefix() {
    let options = options();
    assert!(options.covers(&name("private-chat.42")));
    assert!(options.covers(&name("orders.eu.7")));
    assert!(!options.covers(&name("chat.42")), "no private- prefix");
    assert!(!options.covers(&name("private-chat.42.x")));
    assert!(!options.covers(&name("orders")), "`**` needs a segment");
}

#[test]
fn protocol_notices_are_no_history() {
    let channel = name("private-chat.1");
    let notice = frames(&channel, "pusher_internal:subscription_count", "{}");
    let mut evicted = Evicted::default();
    let mut history = AppHistory::default();
    let kept = history.record(&options(), usize::MAX, &channel, 0, notice, &mut evicted);
    assert!(kept.is_none());
    assert_eq!(history.events(), 0);
}

#[test]
fn a_page_holds_at_most_limit_events_after_since() {
    let channel = name("private-chat.1");
    let mut history = AppHistory::default();
    for i in 0..5 {
        record(&mut history, &channel, &format!("d{i}"));
    }
    let page = history.page(&channel, Some(1), 2);
    let ids: Vec<u64> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [2, 3]);
    assert_eq!(&*page.events[0].data, "\"d1\"");
    assert!(history.page(&channel, Some(5), 10).events.is_empty());
}

#[test]
fn restored_events_keep_their_ids_and_new_ones_follow() {
    let channel = name("private-chat.1");
    let stored: Vec<StoredEvent> = (7..=8)
        .map(|id| StoredEvent {
            id,
            published_ms: 5,
            frame: frames(&channel, "said", "x").pusher().clone(),
        })
        .collect();
    let mut history = AppHistory::default();
    for event in &stored {
        let frames = Frames::from_pusher(event.frame.clone(), Wires::PUSHER);
        history.restore(&channel, event, frames);
    }
    assert_eq!(record(&mut history, &channel, "y"), 9);
    let page = history.page(&channel, None, 10);
    assert!(page.truncated, "ids before 7 are gone");
    assert!(!history.page(&channel, Some(6), 10).truncated);
}

#[test]
fn departures_are_bounded_and_the_oldest_goes_first() {
    let channel = name("private-chat.1");
    let mut history = AppHistory::default();
    let start = Instant::now();
    for i in 0..MAX_DEPARTURES {
        let user = UserId::parse(&format!("u{i}"), 64).unwrap();
        let at = start + Duration::from_millis(i as u64);
        assert!(!history.depart(user, channel.clone(), 0, at));
    }
    let late = start + Duration::from_secs(60);
    let newcomer = UserId::parse("late", 64).unwrap();
    assert!(history.depart(newcomer.clone(), channel.clone(), 0, late));
    assert_eq!(history.departures(), MAX_DEPARTURES);
    let first = UserId::parse("u0", 64).unwrap();
    let window = Duration::from_secs(120);
    assert!(history.recover(&first, &channel, late, window).is_none());
    assert!(history.recover(&newcomer, &channel, late, window).is_some());
}

#[test]
fn an_offset_reads_back_as_written_and_others_are_not_ours() {
    let channel = name("private-chat.1");
    let text = HistoryOffset::text(&channel, 42);
    assert_eq!(text, "private-chat.1:42");
    assert_eq!(
        HistoryOffset::parse(&text, 200),
        Some(HistoryOffset { channel, id: 42 })
    );
    for other in [
        "",
        "42",
        "private-chat.1:",
        "private-chat.1:x",
        "bad name!:1",
        "0-1ab",
    ] {
        assert_eq!(HistoryOffset::parse(other, 200), None, "{other}");
    }
}

#[test]
fn an_offset_replays_what_came_after_only_within_the_window() {
    let channel = name("private-chat.1");
    let mut history = AppHistory::default();
    for i in 0..3 {
        record(&mut history, &channel, &format!("d{i}"));
    }
    let window = Duration::from_secs(120);
    let replay = history.since_offset(&channel, 1, 1_000, window).unwrap();
    assert_eq!(
        (replay.since, replay.entries.len(), replay.last_id),
        (1, 2, 3)
    );
    assert!(
        history.since_offset(&channel, 3, 1_000, window).is_none(),
        "nothing missed"
    );
    let later = 1_000 + 121_000;
    assert!(
        history.since_offset(&channel, 1, later, window).is_none(),
        "gone too long"
    );
}
