use std::time::{Duration, Instant};

use super::*;
use crate::core::wire::{Event, Frames, Wires};

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringcast-history-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings() -> HistorySettings {
    HistorySettings {
        flush_interval: Duration::from_millis(10),
        queue_capacity: 64,
        cache_bytes: 1 << 20,
    }
}

fn apps(max_events: usize) -> Vec<AppConfig> {
    let mut app = AppConfig::with_credentials("1", "k", "s");
    app.history = Some(HistoryConfig {
        channels: vec!["private-chat.*".into()],
        max_events,
        ..HistoryConfig::default()
    });
    vec![app]
}

fn name(raw: &str) -> ChannelName {
    ChannelName::parse(raw, 200).unwrap()
}

fn append(channel: &str, id: u64, published_ms: u64) -> HistoryWrite {
    let channel = name(channel);
    let data = format!("m{id}");
    let frames = Frames::encode(
        &Event::Channel {
            event: "said",
            channel: &channel,
            data: &data,
        },
        Wires::PUSHER,
    );
    HistoryWrite::Append {
        app: "1".into(),
        channel,
        event: StoredEvent {
            id,
            published_ms,
            frame: frames.pusher().clone(),
        },
    }
}

/// Opens the store, applies `writes`, and closes it (everything flushed). sled may hold the
/// directory's lock a moment after the last handle went, so opening is tried for up to 5 s.
fn write_and_close(
    dir: &Path,
    apps: &[AppConfig],
    writes: Vec<HistoryWrite>,
) -> Vec<LoadedChannel> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (store, thread, loaded) = loop {
        let metrics = Arc::new(HistoryMetrics::default());
        match HistoryStore::open(dir, settings(), metrics, apps) {
            Ok(opened) => break opened,
            Err(err) if Instant::now() >= deadline => panic!("{err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    store.push_all(&mut writes.into_iter().collect());
    store.stop(Duration::from_secs(5));
    thread.join().unwrap();
    loaded
}

fn ids(loaded: &[LoadedChannel]) -> Vec<(String, Vec<u64>)> {
    loaded
        .iter()
        .map(|(_, channel, events)| {
            (
                channel.as_str().to_owned(),
                events.iter().map(|e| e.id).collect(),
            )
        })
        .collect()
}

#[test]
fn a_reopened_store_has_the_events_in_id_order() {
    let dir = tempdir();
    let now = now_ms();
    let writes = vec![
        append("private-chat.1", 1, now),
        append("private-chat.2", 1, now),
        append("private-chat.1", 2, now),
    ];
    assert!(write_and_close(&dir, &apps(100), writes).is_empty());
    let loaded = write_and_close(&dir, &apps(100), Vec::new());
    assert_eq!(
        ids(&loaded),
        [
            ("private-chat.1".to_owned(), vec![1, 2]),
            ("private-chat.2".to_owned(), vec![1])
        ]
    );
    let (app, _, events) = &loaded[0];
    assert_eq!(app, "1");
    assert_eq!(events[0].published_ms, now);
    assert_eq!(events[0].frame, {
        let HistoryWrite::Append { event, .. } = append("private-chat.1", 1, now) else {
            unreachable!()
        };
        event.frame
    });
}

#[test]
fn evicted_events_are_gone_after_a_reopen() {
    let dir = tempdir();
    let now = now_ms();
    let mut writes: Vec<HistoryWrite> = (1..=4)
        .map(|id| append("private-chat.1", id, now))
        .collect();
    writes.push(HistoryWrite::Evict {
        app: "1".into(),
        channel: name("private-chat.1"),
        through: 2,
    });
    write_and_close(&dir, &apps(100), writes);
    let loaded = write_and_close(&dir, &apps(100), Vec::new());
    assert_eq!(ids(&loaded), [("private-chat.1".to_owned(), vec![3, 4])]);
}

#[test]
fn at_start_the_store_keeps_only_max_events_unexpired_events_of_kept_channels() {
    let dir = tempdir();
    let now = now_ms();
    let day_and_more = now - 86_400_000 - 1_000;
    let writes = vec![
        append("private-chat.1", 1, day_and_more),
        append("private-chat.1", 2, now),
        append("private-chat.1", 3, now),
        append("private-chat.1", 4, now),
        append("private-other.1", 1, now),
    ];
    write_and_close(&dir, &apps(100), writes);
    let loaded = write_and_close(&dir, &apps(2), Vec::new());
    assert_eq!(ids(&loaded), [("private-chat.1".to_owned(), vec![3, 4])]);
    // What was refused at start was deleted, not just skipped.
    let loaded = write_and_close(&dir, &apps(100), Vec::new());
    assert_eq!(ids(&loaded), [("private-chat.1".to_owned(), vec![3, 4])]);
    let mut without = apps(100);
    without[0].history = None;
    assert!(write_and_close(&dir, &without, Vec::new()).is_empty());
    assert!(write_and_close(&dir, &apps(100), Vec::new()).is_empty());
}

#[test]
fn keys_read_back_as_written() {
    let raw = key("app-1", "private-chat.1", 258);
    assert_eq!(parse_key(&raw), Some(("app-1", "private-chat.1", 258)));
    assert_eq!(parse_key(b"short"), None);
}
