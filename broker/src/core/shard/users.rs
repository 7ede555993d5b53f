//! Signed-in users: sign-in, user homes counting each user's sockets, watchlists,
//! and `terminate_connections`.

use std::time::Instant;

use super::AuditAction;
use super::Shard;
use super::mesh::{ConnKey, MeshMsg, ShardId, Watcher};
use super::user_home_shard;
use crate::core::auth::SignedClaims;
use crate::core::auth::user::{SigninContext, SigninError, verify_signin};
use crate::core::ids::{AppIdx, UserId};
use crate::core::wire::Fault;
use crate::core::wire::Reply;
use ringcast_shared::{AuditDecision, AuditKind};

/// A user homed on this shard: signed-in sockets on every shard, and who watches them.
#[derive(Default, Debug)]
pub(super) struct UserHome {
    pub(super) sockets: u32,
    pub(super) watchers: Vec<Watcher>,
}

impl Shard {
    pub(super) fn signin(&mut self, key: ConnKey, auth: &str, user_data: &str) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.user.is_some() {
            let text = "this connection is already signed in";
            self.send_error_message(key, Fault::InvalidMessage, text);
            return;
        }
        let app = self.state.apps.get(conn.app);
        let ctx = SigninContext {
            app_key: &app.config.key,
            secret: &app.secret,
            socket_id: conn.socket_id,
            max_user_id_chars: app.config.max_user_id_chars,
        };
        match verify_signin(&ctx, auth, user_data) {
            Ok(proof) => {
                let (app_idx, socket_id) = (conn.app, conn.socket_id);
                let (user, user_data, watchlist) = proof.into_parts();
                self.per_app[app_idx]
                    .users
                    .entry(user.clone())
                    .or_default()
                    .push(key);
                let info = serde_json::from_str::<serde_json::Value>(&user_data)
                    .ok()
                    .and_then(|data| data.get("user_info").map(ToString::to_string));
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.user = Some(user.clone());
                    conn.watchlist = watchlist.clone();
                    if conn.tenant.is_none()
                        && let Some(tenant) = SignedClaims::parse(info.as_deref())
                            .tenant
                            .map(Box::<str>::from)
                    {
                        self.state.tenants.connect(conn.app, &tenant);
                        conn.tenant = Some(tenant);
                    }
                    conn.signin_info = info.map(Into::into);
                }
                self.reply(
                    key,
                    &Reply::SignedIn {
                        user_data: &user_data,
                    },
                );
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    AuditAction::Signin,
                    AuditDecision::Allow,
                    None,
                    Some("signature"),
                    None,
                );
                let msg = MeshMsg::UserSockets {
                    app: app_idx,
                    user: user.clone(),
                    online: true,
                };
                self.send_to(self.user_home(app_idx, &user), msg);
                let watcher = Watcher {
                    shard: self.id,
                    conn: key,
                    socket_id,
                };
                self.send_watch(app_idx, watcher, watchlist, true);
            }
            Err(SigninError::WatchlistTooLong) => {
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    AuditAction::Signin,
                    AuditDecision::Deny,
                    None,
                    Some("watchlist"),
                    Some(SigninError::WatchlistTooLong.to_string()),
                );
                let text = SigninError::WatchlistTooLong.to_string();
                self.send_error_message(key, Fault::WatchlistOverLimit, &text);
            }
            Err(err) => {
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    AuditAction::Signin,
                    AuditDecision::Deny,
                    None,
                    Some("signature"),
                    Some(err.to_string()),
                );
                let text = format!("sign-in refused: {err}");
                self.send_error_message(key, Fault::Unauthorized, &text);
            }
        }
    }

    /// The shard that counts `user`'s sockets and keeps their watchers.
    pub(super) fn user_home(&self, app: AppIdx, user: &UserId) -> ShardId {
        user_home_shard(app, user, self.shard_count)
    }

    /// Starts or stops watching `users`, one message per home shard.
    pub(super) fn send_watch(
        &mut self,
        app: AppIdx,
        watcher: Watcher,
        users: Vec<UserId>,
        start: bool,
    ) {
        let mut by_home: Vec<Vec<UserId>> = vec![Vec::new(); self.shard_count];
        for user in users {
            let home = self.user_home(app, &user);
            by_home[home].push(user);
        }
        for (home, users) in by_home.into_iter().enumerate() {
            if !users.is_empty() {
                let msg = MeshMsg::Watch {
                    app,
                    watcher,
                    users,
                    start,
                };
                self.send_to(home, msg);
            }
        }
    }

    /// At a user's home: count a socket arriving or leaving, and tell watchers when the user
    /// comes online (first socket) or goes offline (last socket). In a cluster the node's
    /// first and last sockets are reported instead, and watchers hear when the user comes
    /// online on the first node or goes offline on the last.
    pub(super) fn home_user_sockets(&mut self, app: AppIdx, user: UserId, online: bool) {
        let homes = &mut self.per_app[app].user_homes;
        let entry = homes.entry(user.clone()).or_default();
        let changed = if online {
            entry.sockets += 1;
            entry.sockets == 1
        } else {
            entry.sockets = entry.sockets.saturating_sub(1);
            entry.sockets == 0
        };
        if entry.sockets == 0 && entry.watchers.is_empty() {
            homes.remove(&user);
        }
        if !changed {
            return;
        }
        if self.clustered() {
            self.cluster_out
                .push(crate::core::cluster::ClusterOut::UserStatus { app, user, online });
        } else {
            self.notify_watchers(app, &user, online);
        }
    }

    /// At a user's home: tells the user's watchers that the user came online or went
    /// offline.
    pub(super) fn notify_watchers(&mut self, app: AppIdx, user: &UserId, online: bool) {
        let watchers = match self.per_app[app].user_homes.get(user) {
            Some(entry) => entry.watchers.clone(),
            None => return,
        };
        for watcher in watchers {
            let msg = MeshMsg::WatchlistNotify {
                watcher,
                online,
                users: vec![user.clone()],
            };
            self.send_to(watcher.shard, msg);
        }
    }

    /// At users' home: tells `watcher` which of `users` have a socket on this node.
    pub(super) fn tell_online_here(&mut self, app: AppIdx, watcher: Watcher, users: &[UserId]) {
        let homes = &self.per_app[app].user_homes;
        let online: Vec<UserId> = users
            .iter()
            .filter(|user| homes.get(*user).is_some_and(|entry| entry.sockets > 0))
            .cloned()
            .collect();
        if !online.is_empty() {
            let msg = MeshMsg::WatchlistNotify {
                watcher,
                online: true,
                users: online,
            };
            self.send_to(watcher.shard, msg);
        }
    }

    /// At users' home: register (or drop) a watcher; a new watcher hears at once who is online.
    pub(super) fn home_watch(
        &mut self,
        app: AppIdx,
        watcher: Watcher,
        users: Vec<UserId>,
        start: bool,
    ) {
        let homes = &mut self.per_app[app].user_homes;
        for user in &users {
            if start {
                let entry = homes.entry(user.clone()).or_default();
                if !entry.watchers.contains(&watcher) {
                    entry.watchers.push(watcher);
                }
            } else if let Some(entry) = homes.get_mut(user) {
                entry.watchers.retain(|w| *w != watcher);
                if entry.sockets == 0 && entry.watchers.is_empty() {
                    homes.remove(user);
                }
            }
        }
        if !start {
            return;
        }
        if self.cluster_up() {
            // Online anywhere in the cluster: Redis knows.
            self.cluster_out
                .push(crate::core::cluster::ClusterOut::WhoIsOnline {
                    app,
                    watcher,
                    users,
                });
        } else {
            self.tell_online_here(app, watcher, &users);
        }
    }

    /// Closes every socket signed in as `user`, on every shard (HTTP API
    /// `terminate_connections`).
    pub fn terminate_user(&mut self, app: AppIdx, user: UserId, now: Instant) {
        self.broadcast(crate::core::cluster::Command::Terminate {
            app: self.app_id(app),
            user: user.as_str().to_owned(),
        });
        for shard in 0..self.shard_count {
            let msg = MeshMsg::TerminateUser {
                app,
                user: user.clone(),
            };
            self.send_to(shard, msg);
        }
        self.drain_to_self(now);
    }

    /// At a watcher's shard: tells the watching socket, if it is still there, that `users`
    /// came online or went offline.
    pub(super) fn notify_watcher(&mut self, watcher: Watcher, online: bool, users: &[UserId]) {
        let Some(conn) = self
            .conns
            .get_mut(watcher.conn)
            .filter(|c| c.socket_id == watcher.socket_id)
        else {
            return;
        };
        // In a cluster two paths can report one change (Redis's answer to a new watcher and
        // the user's node announcing it), so the socket is told only what it does not know.
        let news: Vec<UserId> = users
            .iter()
            .filter(|user| conn.watched_online.contains(user) != online)
            .cloned()
            .collect();
        if news.is_empty() {
            return;
        }
        if online {
            conn.watched_online.extend(news.iter().cloned());
        } else {
            conn.watched_online.retain(|user| !news.contains(user));
        }
        self.reply(
            watcher.conn,
            &Reply::Watchlist {
                online,
                users: &news,
            },
        );
    }

    /// On every shard: closes the sockets signed in as `user`.
    pub(super) fn close_user_sockets(&mut self, app: AppIdx, user: &UserId) {
        let keys = self.per_app[app]
            .users
            .get(user)
            .cloned()
            .unwrap_or_default();
        for key in keys {
            let text = "connection terminated by the app";
            self.send_error_message(key, Fault::Unauthorized, text);
        }
    }
}
